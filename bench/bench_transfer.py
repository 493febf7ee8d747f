"""What crosses the server for each remote job, on loopback: the worker's output coming
home (``nodes.transfer.upload``: resumable, chunked PATCHes, the server's SHA-256 check at
the end) against one plain aiohttp PUT of the same file into a bare handler that only
writes it; and the source going out (``GET /worker/jobs/{id}/source``, relayed from the
media server) against reading it from the stand-in Jellyfin directly. Run through
``bench_workers.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from bench_server import jellyfin_app, serve

from optimized_versions.app import create_app
from optimized_versions.config import Config, StaticToken
from optimized_versions.jobs import cache
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.keys import STORE, WORKER_TOKENS
from optimized_versions.nodes.transfer import MiB, upload

ROUNDS = 5
CHUNKS = (8 * MiB, 64 * MiB)
SOURCE = (
    "http://127.0.0.1:9/x"  # never read  # transfer.upload's default, and one round trip per 64 MiB
)


async def _read(path: Path) -> AsyncIterator[bytes]:
    """The file in 1 MiB reads in a thread, as transfer.upload reads it."""
    with path.open("rb") as source:
        while block := await asyncio.to_thread(source.read, MiB):
            yield block


def bare_app(folder: Path) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        with (folder / request.match_info["name"]).open("wb") as sink:
            async for piece in request.content.iter_chunked(MiB):
                await asyncio.to_thread(sink.write, piece)
        return web.Response(status=204)

    app = web.Application(client_max_size=1 << 40)
    app.router.add_put("/{name}", put)
    return app


def optimizing_job(app: web.Application, root: Path, node: str, source: str = SOURCE) -> str:
    """A job in the store that runs on ``node``: what the upload handlers ask for."""
    job_id = str(uuid.uuid4())
    output = str(cache.output_path(root / "cache", job_id))
    job = Job(
        job_id,
        "bench",
        "bench",
        "device",
        f"item-{job_id}",
        {},
        "http://127.0.0.1:9/x",
        "mkv",
        "h264-1080p",
        JobStatus.QUEUED,
        time.time(),
        output,
    )
    store = app[STORE]
    store.add(job, source)  # no await in between: the scheduler never sees it
    store.transition(job, JobStatus.OPTIMIZING, node=node, started_at=time.time())
    return job_id


async def upload_part(work: Path, queue_url: str, megabytes: int) -> None:
    root = work / "upload"
    (root / "bare").mkdir(parents=True)
    path = root / "output.mp4"
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1_000_000))
    size = path.stat().st_size
    started = time.perf_counter()
    sha256 = await asyncio.to_thread(lambda: hashlib.file_digest(path.open("rb"), "sha256"))
    hashed = time.perf_counter() - started
    config = Config(
        tokens=(StaticToken(token="bench-token-0123456789", name="bench", admin=True),),
        data_dir=root / "data",
        cache_dir=root / "cache",
        queue_url=queue_url,
        local_jobs=False,
        min_free_space=0,
    )
    app = create_app(config)
    server, port = await serve(app)
    bare, bare_port = await serve(bare_app(root / "bare"))
    token = app[WORKER_TOKENS].create("up")
    base = f"http://127.0.0.1:{port}"
    times: dict[str, list[float]] = {f"upload, {c // MiB} MiB chunks": [] for c in CHUNKS}
    times["plain PUT"] = []
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(ROUNDS):
                kinds = list(times) if n % 2 == 0 else list(times)[::-1]
                for kind in kinds:
                    os.sync()
                    at = time.perf_counter()
                    if kind == "plain PUT":
                        url = f"http://127.0.0.1:{bare_port}/out-{n}.mp4"
                        async with session.put(url, data=_read(path)) as resp:
                            assert resp.status == 204, resp.status
                    else:
                        chunk = CHUNKS[0] if "8 MiB" in kind else CHUNKS[1]
                        job_id = optimizing_job(app, root, "up")
                        await upload(
                            session, base, token, job_id, path, sha256.hexdigest(), chunk=chunk
                        )
                    times[kind].append(time.perf_counter() - at)
                for old in (root / "bare").iterdir():
                    old.unlink()
    finally:
        await bare.cleanup()
        await server.cleanup()
    print(
        f"upload on loopback, {size / 1e6:.0f} MB, best and median of {ROUNDS} "
        f"(SHA-256 of the file alone: {hashed:.2f} s, {size / hashed / 1e6:.0f} MB/s):"
    )
    plain = statistics.median(times["plain PUT"])
    for kind, values in times.items():
        med = statistics.median(values)
        print(
            f"  {kind}: {size / min(values) / 1e6:.0f} MB/s best, {size / med / 1e6:.0f} MB/s "
            f"median ({med:.2f} s); time ratio to the plain PUT {med / plain:.2f}"
        )


async def _drain(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    got = 0
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200, resp.status
        async for piece in resp.content.iter_chunked(MiB):
            got += len(piece)
    return got


async def relay_part(work: Path, queue_url: str) -> None:
    """The source, relayed by the server to a worker, against reading it directly."""
    root = work / "upload"
    path = root / "output.mp4"  # upload_part's file: any bytes will do
    jellyfin, jellyfin_port = await serve(jellyfin_app(path))
    source = f"http://127.0.0.1:{jellyfin_port}/Videos/x/stream?static=true&api_key=t"
    config = Config(
        tokens=(StaticToken(token="bench-token-0123456789", name="bench", admin=True),),
        data_dir=root / "relay-data",
        cache_dir=root / "relay-cache",
        queue_url=queue_url,
        local_jobs=False,
        min_free_space=0,
    )
    app = create_app(config)
    server, port = await serve(app)
    auth = {"Authorization": f"Bearer {app[WORKER_TOKENS].create('down')}"}
    job_id = optimizing_job(app, root, "down", source)
    relayed = f"http://127.0.0.1:{port}/worker/jobs/{job_id}/source/stream"
    times: dict[str, list[float]] = {"through the server": [], "from Jellyfin directly": []}
    size = 0
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(ROUNDS):
                for kind in list(times) if n % 2 == 0 else list(times)[::-1]:
                    at = time.perf_counter()
                    if kind == "through the server":
                        size = await _drain(session, relayed, auth)
                    else:
                        size = await _drain(session, source, {})
                    times[kind].append(time.perf_counter() - at)
    finally:
        await server.cleanup()
        await jellyfin.cleanup()
    direct = statistics.median(times["from Jellyfin directly"])
    print(f"source to a worker on loopback, {size / 1e6:.0f} MB, median of {ROUNDS}:")
    for kind, values in times.items():
        med = statistics.median(values)
        print(
            f"  {kind}: {size / med / 1e6:.0f} MB/s ({med:.2f} s); "
            f"time ratio to direct {med / direct:.2f}"
        )
