"""The worker's side of the upload (``nodes.transfer.upload``) against the real app: whole,
cut and resumed, through a link that drops, given up, started again (see worker_host.py)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from pathlib import Path

import aiohttp
import pytest
from conftest import Env, StartApp
from worker_host import SIZE, Relay, Worker, after_the_break, cut_body, make_worker

from optimized_versions.keys import UPLOADS
from optimized_versions.nodes.transfer import UploadError, upload


@pytest.fixture
async def worker(env: Env, start_app: StartApp, tmp_path: Path) -> Worker:
    return await make_worker(env, start_app, tmp_path)


async def test_a_whole_upload_lands_verified(worker: Worker) -> None:
    uploads = worker.client.app[UPLOADS]
    assert await worker.offset() == 0 and uploads.received(worker.job) is None
    async with aiohttp.ClientSession() as session:
        await upload(session, worker.base, worker.token, worker.job.id, worker.file, worker.sha256)
    received = uploads.received(worker.job)
    assert received == Path(worker.job.output_path + ".received")
    assert received.read_bytes() == worker.file.read_bytes()
    assert not Path(worker.job.output_path + ".upload").exists()
    assert uploads.bytes_written == SIZE  # each byte once
    head = await worker.client.head(worker.url, headers=worker.auth())
    assert head.headers["Upload-Offset"] == str(SIZE) and head.headers["Upload-Complete"] == "?1"
    again = await worker.client.patch(
        worker.url, data=b"x", headers={**worker.auth(), "Upload-Offset": str(SIZE)}
    )
    assert again.status == 409 and "already received" in (await again.json())["message"]
    uploads.discard(worker.job)
    assert uploads.received(worker.job) is None and await worker.offset() == 0


async def test_a_cut_upload_resumes_and_sends_only_the_rest(worker: Worker) -> None:
    data = worker.file.read_bytes()
    half = SIZE // 2 + 7
    await cut_body(worker, data[:half], SIZE)
    kept = await after_the_break(worker)
    # what the server had read is kept; aiohttp's unread read-ahead (< 1 MiB) is lost
    assert half - 1024 * 1024 < kept <= half
    uploads = worker.client.app[UPLOADS]
    assert uploads.bytes_written == kept
    assert Path(worker.job.output_path + ".upload").read_bytes() == data[:kept]
    async with aiohttp.ClientSession() as session:
        await upload(
            session, worker.base, worker.token, worker.job.id, worker.file, worker.sha256,
            chunk=1024 * 1024,
        )  # fmt: skip
    assert uploads.bytes_written == SIZE  # resumed at the offset: what was kept not sent again
    received = uploads.received(worker.job)
    assert received is not None and received.read_bytes() == data


async def test_a_client_body_that_breaks_keeps_what_arrived(worker: Worker) -> None:
    """The aiohttp client's own way of failing mid-body (a generator that raises)."""
    data = worker.file.read_bytes()

    async def half_then_fail() -> object:
        yield data[: 2 * 1024 * 1024]
        await asyncio.sleep(0.1)  # the server has it in hand
        raise OSError("the disk went away")

    headers = {**worker.auth(), "Upload-Offset": "0", "Content-Length": str(SIZE)}
    with pytest.raises((aiohttp.ClientError, OSError)):
        await worker.client.patch(worker.url, data=half_then_fail(), headers=headers)
    assert 0 < await after_the_break(worker) <= 2 * 1024 * 1024


async def test_upload_starts_once_again_after_a_mismatch_then_gives_up(worker: Worker) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = hashlib.sha256(b"another file").hexdigest()
        with pytest.raises(UploadError, match="sent twice, wrong twice"):
            await upload(session, worker.base, worker.token, worker.job.id, worker.file, wrong)
    assert worker.client.app[UPLOADS].bytes_written == 2 * SIZE


async def test_upload_rides_out_a_dropped_link(worker: Worker) -> None:
    port = worker.client.make_url("/").port
    assert port is not None
    relay = Relay(port, after=3 * 1024 * 1024, cuts=1)
    base = await relay.start()
    async with aiohttp.ClientSession() as session:
        await upload(
            session, base, worker.token, worker.job.id, worker.file, worker.sha256,
            chunk=2 * 1024 * 1024, attempts=5, backoff=0.05,
        )  # fmt: skip
    await relay.close()
    assert relay.cut == 1
    uploads = worker.client.app[UPLOADS]
    assert uploads.bytes_written == SIZE  # resumed where the server stood: nothing twice
    received = uploads.received(worker.job)
    assert received is not None and received.read_bytes() == worker.file.read_bytes()


async def test_upload_gives_up_after_its_attempts(worker: Worker) -> None:
    port = worker.client.make_url("/").port
    assert port is not None
    relay = Relay(port, after=1024 * 1024, cuts=100)
    base = await relay.start()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UploadError, match="failed 3 times in a row"):
            await upload(
                session, base, worker.token, worker.job.id, worker.file, worker.sha256,
                chunk=4 * 1024 * 1024, attempts=3, backoff=0.01,
            )  # fmt: skip
    await relay.close()
    assert 1 <= relay.cut <= 3  # (a try may also meet the server still busy with the last)
    assert worker.client.app[UPLOADS].received(worker.job) is None


async def test_upload_drops_bytes_that_cannot_be_its_file(worker: Worker) -> None:
    """The server holds more than the file has (another attempt's leftovers): upload()
    gives that upload up (DELETE) and sends the file from the start."""
    junk = io.BytesIO(os.urandom(SIZE + 10))
    resp = await worker.client.patch(
        worker.url, data=junk, headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert resp.status == 204 and resp.headers["Upload-Offset"] == str(SIZE + 10)
    async with aiohttp.ClientSession() as session:
        await upload(session, worker.base, worker.token, worker.job.id, worker.file, worker.sha256)
    received = worker.client.app[UPLOADS].received(worker.job)
    assert received is not None and received.read_bytes() == worker.file.read_bytes()
    assert worker.client.app[UPLOADS].bytes_written == 2 * SIZE + 10
