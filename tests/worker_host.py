"""A worker host for the upload tests: a job of its own through the real app, a file to
send, and a TCP relay that breaks links.

The job is posted as a phone does, then handed to the worker "laptop" through the store (as
the queue will). The host's CPU reads busy, so the local scheduler holds every job (the real
load gate) and nothing races the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import Env, StartApp, post_job

from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.keys import STORE, UPLOADS, WORKER_TOKENS

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


async def cut_body(worker: Worker, sent: bytes, declared: int) -> None:
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


async def after_the_break(worker: Worker) -> int:
    """The server notices the break a moment later, writes what it had read, and lets the
    job's upload go; then HEAD tells where to resume."""
    uploads = worker.client.app[UPLOADS]
    for _ in range(250):
        await asyncio.sleep(0.02)
        if not uploads.busy(worker.job):
            return await worker.offset()
    raise AssertionError("the broken request still holds the job's upload")


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
