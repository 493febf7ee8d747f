"""The queue under worker hosts: SAQ operations per second on PostgresQueue directly and
through the server's proxy (``POST /worker/queue``), then K simulated workers
(``bench_fleet.py``). Run through ``bench_workers.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from bench_fleet import HEARTBEAT, CountingQueue, fleet_run
from bench_server import jellyfin_app, make_clip, serve
from psycopg_pool import AsyncConnectionPool
from saq import Job, Status
from saq.queue.postgres import PostgresQueue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import served  # the console script as a process

from optimized_versions.nodes.tokens import TOKENS_FILE, WorkerTokens

OPS = 300  # operations per kind in the one-by-one measurements
CONCURRENT = 16  # tasks at once in the concurrent one


async def rate(name: str, count: int, step: Callable[[int], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for n in range(count):
        await step(n)
    seconds = time.perf_counter() - started
    print(f"  {name}: {count / seconds:,.0f}/s ({seconds / count * 1000:.2f} ms each)")
    return count / seconds


async def concurrent_rate(name: str, count: int, step: Callable[[int], Awaitable[object]]) -> None:
    async def lane(k: int) -> None:
        for n in range(k, count, CONCURRENT):
            await step(n)

    started = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(CONCURRENT)))
    seconds = time.perf_counter() - started
    print(f"  {name}, {CONCURRENT} at once: {count / seconds:,.0f}/s")


async def ops(name: str, enqueue: PostgresQueue, queue: Any) -> None:
    """enqueue (always direct: workers may not), dequeue, update, jobs, finish, via ``queue``."""
    keys = [f"{name}-{n}" for n in range(OPS)]
    await rate(
        "enqueue (always direct: the server's side)",
        OPS,
        lambda n: enqueue.enqueue("transcode", key=keys[n], timeout=0),
    )
    jobs: list[Job] = []

    async def dequeue(n: int) -> None:
        job = await queue.dequeue(timeout=1)
        assert job is not None, "a queued job was not dequeued"
        jobs.append(job)

    await rate("dequeue (a job waiting)", OPS, dequeue)
    meta = {"percent": 50.0, "speed": 1.0, "size": 1 << 20, "frames": 48}
    await rate("update (progress)", OPS, lambda n: jobs[n].update(progress=0.5, meta=meta))
    await concurrent_rate("update", OPS, lambda n: jobs[n].update(progress=0.6, meta=meta))
    await rate("jobs (the abort check)", OPS, lambda n: queue.jobs([jobs[n].key]))
    await rate("finish", OPS, lambda n: jobs[n].finish(Status.COMPLETE, result={"ok": 1}))


async def micro(url: str, server: str, token: str) -> None:
    pool = AsyncConnectionPool(url, open=False, kwargs={"autocommit": True})  # as the server's
    await pool.open(wait=True)
    try:
        print("PostgresQueue directly (a pool of 4, as the server's):")
        direct = PostgresQueue(pool=pool, name="direct")
        await direct.connect()
        await ops("direct", direct, direct)
        print("through the server's proxy (HttpQueue -> POST /worker/queue, one client):")
        remote = PostgresQueue(pool=pool, name="node.micro")
        await remote.connect()
        http = CountingQueue(
            f"{server}/worker/queue",
            name="node.micro",
            seen=defaultdict(list),
            headers={"Authorization": f"Bearer {token}"},
        )
        await http.connect()
        try:
            await ops("proxy", remote, http)
        finally:
            await http.disconnect()
    finally:
        await pool.close()


def database(cluster: str, name: str) -> str:
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.replace("/postgres?", f"/{name}?")


async def queue_part(work: Path, cluster: str, ks: list[int], seconds: float) -> None:
    clip = work / "queue-clip.mkv"  # never read: simulated workers run no ffmpeg
    make_clip(clip, 1)
    jellyfin, port = await serve(jellyfin_app(clip))
    source = f"http://127.0.0.1:{port}/Videos/x/stream?static=true&api_key=t"
    try:
        root = work / "micro"
        root.mkdir()
        url = database(cluster, "micro")
        data = root / "data"
        data.mkdir()
        tokens = WorkerTokens(data / TOKENS_FILE)
        token = tokens.create("micro")
        tokens.close()
        server = await served.serve(root, QUEUE_URL=url, LOCAL_JOBS="false", LOG_LEVEL="WARNING")
        try:
            await micro(url, server.base, token)
        finally:
            await server.stop()
        for k in ks:
            print(f"{k} simulated workers, heartbeat {HEARTBEAT} s, {seconds:g} s a phase:")
            await fleet_run(work / f"fleet-{k}", database(cluster, f"fleet{k}"), k, seconds, source)
    finally:
        await jellyfin.cleanup()
