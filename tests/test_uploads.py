"""A worker host's output coming back: resumable, authenticated, verified by SHA-256.

Through the real app: a job is posted as a phone does, then handed to the worker "laptop"
through the store (as the queue will). The host's CPU reads busy, so the local scheduler
holds every job (the real load gate) and nothing here races the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import ALICE, Env, StartApp, post_job

from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.keys import STORE, UPLOADS, WORKER_TOKENS
from optimized_versions.nodes.transfer import UploadError, upload
from optimized_versions.nodes.uploads import Uploads, repr_digest

SIZE = 5 * 1024 * 1024 + 123  # not a whole number of chunks


@dataclass
class Worker:
    client: TestClient[web.Request, web.Application]
    token: str
    job: Job
    file: Path
    sha256: str

    @property
    def url(self) -> str:
        return f"/worker/jobs/{self.job.id}/output"

    @property
    def base(self) -> str:
        return str(self.client.make_url("/"))

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def offset(self) -> int:
        resp = await self.client.head(self.url, headers=self.auth())
        assert resp.status == 200, resp.status
        return int(resp.headers["Upload-Offset"])


async def make_worker(env: Env, start_app: StartApp, tmp_path: Path, **config: Any) -> Worker:
    env.load.cpu = 99.0  # this host is busy: the job waits for a worker
    client = await start_app(**config)
    job_id = await post_job(client, env, "h264")
    store = client.app[STORE]
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED, job
    store.transition(job, JobStatus.OPTIMIZING, node="laptop")
    token = client.app[WORKER_TOKENS].create("laptop")
    file = tmp_path / "out.mp4"
    file.write_bytes(os.urandom(SIZE))
    return Worker(client, token, job, file, hashlib.sha256(file.read_bytes()).hexdigest())


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


async def _cut_body(worker: Worker, sent: bytes, declared: int) -> None:
    """A PATCH whose connection drops after ``sent`` of ``declared`` bytes, as a raw socket."""
    url = worker.client.make_url(worker.url)
    _, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"PATCH {worker.url} HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Authorization: Bearer {worker.token}\r\nUpload-Offset: 0\r\n"
        f"Upload-Complete: ?0\r\nContent-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode() + sent)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _after_the_break(worker: Worker) -> int:
    """The server notices the break a moment later, writes what it had read, and lets the
    job's upload go; then HEAD tells where to resume."""
    uploads = worker.client.app[UPLOADS]
    for _ in range(250):
        await asyncio.sleep(0.02)
        if not uploads.busy(worker.job):
            return await worker.offset()
    raise AssertionError("the broken request still holds the job's upload")


async def test_a_cut_upload_resumes_and_sends_only_the_rest(worker: Worker) -> None:
    data = worker.file.read_bytes()
    half = SIZE // 2 + 7
    await _cut_body(worker, data[:half], SIZE)
    kept = await _after_the_break(worker)
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
    assert 0 < await _after_the_break(worker) <= 2 * 1024 * 1024


async def test_a_wrong_digest_is_422_and_the_partial_goes(worker: Worker) -> None:
    data = worker.file.read_bytes()
    wrong = hashlib.sha256(data + b"!").hexdigest()
    headers = {
        **worker.auth(),
        "Upload-Offset": "0",
        "Upload-Complete": "?1",
        "Repr-Digest": repr_digest(wrong),
    }
    resp = await worker.client.patch(worker.url, data=io.BytesIO(data), headers=headers)
    body = await resp.json()
    assert resp.status == 422, body
    assert worker.sha256 in body["message"] and wrong in body["message"]
    assert await worker.offset() == 0
    assert not Path(worker.job.output_path + ".upload").exists()
    assert worker.client.app[UPLOADS].received(worker.job) is None


async def test_upload_starts_once_again_after_a_mismatch_then_gives_up(worker: Worker) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = hashlib.sha256(b"another file").hexdigest()
        with pytest.raises(UploadError, match="sent twice, wrong twice"):
            await upload(session, worker.base, worker.token, worker.job.id, worker.file, wrong)
    assert worker.client.app[UPLOADS].bytes_written == 2 * SIZE


async def test_a_wrong_offset_is_409_with_the_right_one(worker: Worker) -> None:
    first = await worker.client.patch(
        worker.url, data=b"a" * 1000, headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert first.status == 204 and first.headers["Upload-Offset"] == "1000"
    for offset in ("0", "1001"):
        resp = await worker.client.patch(
            worker.url, data=b"b" * 10, headers={**worker.auth(), "Upload-Offset": offset}
        )
        assert resp.status == 409 and resp.headers["Upload-Offset"] == "1000"
        assert "1000 bytes were received" in (await resp.json())["message"]
    assert await worker.offset() == 1000


async def test_only_the_jobs_worker_may_upload(worker: Worker) -> None:
    other = worker.client.app[WORKER_TOKENS].create("desktop")
    for method in ("HEAD", "PATCH", "DELETE"):
        resp = await worker.client.request(
            method, worker.url, headers={**worker.auth(other), "Upload-Offset": "0"}
        )
        assert resp.status == 404, method  # as for no job at all: no hint it exists
    missing = await worker.client.head("/worker/jobs/nope/output", headers=worker.auth(other))
    assert missing.status == 404
    phone = await worker.client.patch(
        worker.url, data=b"x", headers={"Authorization": ALICE, "Upload-Offset": "0"}
    )
    assert phone.status == 401
    assert await worker.offset() == 0


async def test_a_job_that_is_not_optimizing_takes_no_upload(worker: Worker) -> None:
    worker.client.app[STORE].transition(worker.job, JobStatus.CANCELLED)
    resp = await worker.client.patch(
        worker.url, data=b"x", headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert resp.status == 409
    assert "is cancelled, not optimizing" in (await resp.json())["message"]
    assert worker.client.app[UPLOADS].bytes_written == 0


async def test_two_uploads_at_once_the_second_is_409(worker: Worker) -> None:
    gate = asyncio.Event()

    async def slow() -> object:
        yield b"a" * 1000
        await gate.wait()
        yield b"b" * 1000

    headers = {**worker.auth(), "Upload-Offset": "0", "Content-Length": "2000"}
    first = asyncio.ensure_future(worker.client.patch(worker.url, data=slow(), headers=headers))
    uploads = worker.client.app[UPLOADS]
    for _ in range(250):  # until the first one holds the job's upload
        if uploads.busy(worker.job):
            break
        await asyncio.sleep(0.02)
    second = await worker.client.patch(
        worker.url, data=b"c", headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert second.status == 409 and second.headers["Retry-After"] == "1"
    assert "another upload of its output is in progress" in (await second.json())["message"]
    gate.set()
    assert (await first).status == 204
    assert await worker.offset() == 2000


async def test_no_room_in_the_cache_is_507(env: Env, start_app: StartApp, tmp_path: Path) -> None:
    worker = await make_worker(env, start_app, tmp_path, min_free_space=10**18)  # > any disk
    resp = await worker.client.patch(
        worker.url, data=b"x" * 100, headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert resp.status == 507 and "this upload needs 100" in (await resp.json())["message"]
    assert worker.client.app[UPLOADS].bytes_written == 0 and await worker.offset() == 0


class Relay:
    """A TCP relay in front of the app whose first ``cuts`` connections break after
    ``after`` bytes from the client: a link that drops, as seen by both ends."""

    def __init__(self, port: int, after: int, cuts: int) -> None:
        self.port, self.after, self.cuts = port, after, cuts
        self.cut = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        limit = self.after if self.cut < self.cuts else None
        ends = (writer, up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, limit, ends),
            self._pump(up_reader, writer, None, ends),
            return_exceptions=True,
        )
        for end in ends:
            end.close()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        limit: int | None,
        ends: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        sent = 0
        while data := await source.read(64 * 1024):
            if limit is not None and sent + len(data) > limit:
                sink.write(data[: limit - sent])
                await sink.drain()
                self.cut += 1
                for end in ends:
                    end.transport.abort()
                return
            sink.write(data)
            await sink.drain()
            sent += len(data)
        sink.close()


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


async def test_a_stalled_body_is_408_and_what_came_is_kept(
    env: Env, start_app: StartApp, tmp_path: Path
) -> None:
    worker = await make_worker(env, start_app, tmp_path, body_timeout=0.3)
    gate = asyncio.Event()

    async def stalls() -> object:
        yield b"a" * 1000
        await gate.wait()
        yield b"b"

    headers = {**worker.auth(), "Upload-Offset": "0", "Content-Length": "1001"}
    resp = await worker.client.patch(worker.url, data=stalls(), headers=headers)
    gate.set()
    assert resp.status == 408 and "no part of the body arrived for 0.3 s" in await resp.text()
    assert await worker.offset() == 1000


async def test_a_restart_removes_uploads_of_jobs_no_worker_runs(
    env: Env, start_app: StartApp, worker: Worker
) -> None:
    resp = await worker.client.patch(
        worker.url, data=b"a" * 1000, headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert resp.status == 204
    partial = Path(worker.job.output_path + ".upload")
    assert partial.stat().st_size == 1000
    await start_app()  # the job goes back to the queue: nobody will finish this upload
    assert not partial.exists()


async def test_after_a_restart_the_whole_file_is_hashed_from_disk(worker: Worker) -> None:
    """The running SHA-256 lives in memory; a server that did not see the first bytes
    (restarted since) reads the file once at the end, and still tells right from wrong."""
    data = worker.file.read_bytes()
    half = SIZE // 2
    resp = await worker.client.patch(
        worker.url, data=io.BytesIO(data[:half]), headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert resp.status == 204
    fresh = Uploads(0)  # the files are the state: a new instance, as after a restart
    assert fresh.offset(worker.job) == half

    async def rest() -> AsyncIterator[bytes]:
        yield data[half:]

    assert await fresh.append(worker.job, rest()) == SIZE
    received = await fresh.finish(worker.job, bytes.fromhex(worker.sha256))
    assert received.sha256 == worker.sha256 and received.size == SIZE
    assert received.path.read_bytes() == data


async def test_malformed_headers_are_400_and_write_nothing(worker: Worker) -> None:
    digest = repr_digest(worker.sha256)
    cases = [
        ({}, "Upload-Offset is needed"),
        ({"Upload-Offset": "-1"}, "Upload-Offset must be a whole number"),
        ({"Upload-Offset": "0", "Upload-Complete": "?1"}, "Repr-Digest must carry"),
        ({"Upload-Offset": "0", "Upload-Complete": "?1", "Repr-Digest": "sha-256=:abc=:"}, "Repr"),
        ({"Upload-Offset": "0", "Upload-Complete": "?1", "Repr-Digest": "md5=:abc=:"}, "Repr"),
        ({"Upload-Offset": "0", "Upload-Length": "5"}, "more than Upload-Length 5"),
    ]
    for headers, message in cases:
        resp = await worker.client.patch(
            worker.url, data=b"x" * 10, headers={**worker.auth(), **headers}
        )
        assert resp.status == 400 and message in (await resp.json())["message"], headers
    assert worker.client.app[UPLOADS].bytes_written == 0
    short = {"Upload-Offset": "0", "Upload-Complete": "?1", "Repr-Digest": digest}
    resp = await worker.client.patch(
        worker.url, data=b"x" * 10, headers={**worker.auth(), **short, "Upload-Length": "20"}
    )
    assert resp.status == 422 and "10 bytes arrived but Upload-Length said 20" in await resp.text()
    assert await worker.offset() == 0


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
