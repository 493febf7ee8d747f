"""The server's side of a worker's upload (``PATCH /worker/jobs/{id}/output``): who may,
where it resumes, what is refused and why, and the files it leaves (see worker_host.py)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import ALICE, Env, StartApp
from worker_host import SIZE, Worker, make_worker

from optimized_versions.jobs.models import JobStatus
from optimized_versions.keys import STORE, UPLOADS, WORKER_TOKENS
from optimized_versions.nodes.uploads import Uploads, repr_digest


@pytest.fixture
async def worker(env: Env, start_app: StartApp, tmp_path: Path) -> Worker:
    return await make_worker(env, start_app, tmp_path)


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


async def test_a_restart_keeps_the_files_of_a_job_a_worker_host_still_runs(
    env: Env, start_app: StartApp, worker: Worker, queue_url: str
) -> None:
    """With worker hosts, a host's job stays its own over a restart of the server: the
    upload it will resume is kept; those of jobs no one runs go, whatever their stage."""
    resp = await worker.client.patch(
        worker.url, data=b"a" * 1000, headers={**worker.auth(), "Upload-Offset": "0"}
    )
    assert resp.status == 204
    cache = env.config.cache_dir
    kept = {f"{worker.job.id}.mp4.{end}" for end in ("upload", "received.part")}
    (cache / f"{worker.job.id}.mp4.received.part").write_bytes(b"written in place")
    gone = {f"0b6e2f0c-old-job.mp4.{end}" for end in ("upload", "received", "received.part")}
    for name in gone:
        (cache / name).write_bytes(b"no one finishes this")
    await start_app(queue_url=queue_url)
    assert {p.name for p in cache.iterdir()} == kept
    assert Path(worker.job.output_path + ".upload").stat().st_size == 1000


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
