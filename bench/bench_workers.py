"""Benchmark worker hosts: N jobs on 1 and on 2 worker processes, where the time goes
around each job, then the queue itself and the upload (bench/README.md).

The server runs here (``create_app``, QUEUE_URL on a throwaway PostgreSQL, LOCAL_JOBS
false: every job runs on a worker); the workers are the console script
(``optimized-versions worker``), each with its own data and cache folder and CPU_SLOTS=1.
A middleware on the server notes when each worker call arrives and is answered, so each
job's timeline is measured where the server sees it.

    python bench/bench_workers.py                         # everything, a few minutes
    python bench/bench_workers.py --skip-queue --skip-upload
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_server import jellyfin_app, make_clip, serve
from bench_timeline import Recorder, Run, show
from postgres import postgres  # the tests' throwaway cluster on a Unix socket

from optimized_versions.app import create_app
from optimized_versions.config import Config, StaticToken
from optimized_versions.keys import STORE, WORKER_TOKENS

TOKEN = "bench-token-0123456789"
TOKENS = (StaticToken(token=TOKEN, name="bench", admin=True),)
COMMAND = str(Path(sys.executable).parent / "optimized-versions")
POLL = 0.05
HEARTBEAT = 5.0  # WORKER_HEARTBEAT's default
MIN_FREE_SPACE = 256 * 1024**2


def config(root: Path, queue_url: str) -> Config:
    return Config(
        tokens=TOKENS,
        data_dir=root / "data",
        cache_dir=root / "cache",
        queue_url=queue_url,
        worker_heartbeat=HEARTBEAT,
        local_jobs=False,
        max_concurrent_jobs=100,
        max_cached_per_user=0,
        min_free_space=MIN_FREE_SPACE,
        encoder_preference="software",
    )


async def start_worker(
    base: str, root: Path, name: str, token: str, logs: list[IO[bytes]]
) -> asyncio.subprocess.Process:
    home = root / name
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "WORKER_TOKEN": token,
        "DATA_DIR": str(home / "data"),
        "CACHE_DIR": str(home / "cache"),
        "HARDWARE_CACHE": str(root.parent / "hardware.json"),  # probed once for all runs
        "WORKER_HEARTBEAT": str(HEARTBEAT),
        "CPU_SLOTS": "1",
        # both workers share these two cores: each one's gate would see the other's ffmpeg
        # and hold its next job; the 1-worker run is ungated alike, so only N differs
        "CPU_HIGH": "100",
        "MEMORY_LOW": "0",
        "MIN_FREE_SPACE": str(MIN_FREE_SPACE),
        "LOG_LEVEL": "WARNING",
    }
    log = (home / "worker.log").open("wb")
    logs.append(log)
    return await asyncio.create_subprocess_exec(
        COMMAND, "worker", "--server", base, env=env, stdout=log, stderr=log
    )


async def wait_nodes(session: aiohttp.ClientSession, count: int) -> None:
    """Until every worker has sent its first heartbeat (its probe is done)."""
    for _ in range(1200):
        async with session.get("/hardware") as resp:
            nodes = (await resp.json()).get("nodes", [])
        if sum(n["online"] and n["slots"] > 0 for n in nodes) >= count:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the workers never said hello: see their worker.log")


async def submit_and_watch(
    session: aiohttp.ClientSession, source: str, jobs: int, recorder: Recorder
) -> float:
    started = time.time()
    for n in range(jobs):
        at = time.time()
        body = {"url": source, "deviceId": f"device-{n}", "itemId": f"item-{n}"}
        async with session.post("/optimize-version", json=body) as resp:
            if resp.status != 201:
                raise SystemExit(f"optimize-version answered {resp.status}: {await resp.text()}")
            recorder.jobs[(await resp.json())["id"]].posted = at
    while True:
        async with session.get("/all-jobs") as resp:
            listed = await resp.json()
        now = time.time()
        for job in listed:
            step = recorder.jobs[job["id"]]
            if job["status"] == "failed":
                raise SystemExit(f"job {job['id']} failed: {job.get('error')}")
            step.node = job.get("node") or step.node
        if all(job["status"] == "completed" for job in listed):
            return now - started
        await asyncio.sleep(POLL)


async def run_once(root: Path, queue_url: str, source: str, workers: int, jobs: int) -> Run:
    recorder = Recorder()
    app = create_app(config(root, queue_url))
    app.middlewares.append(recorder.middleware)
    server, port = await serve(app)
    base, logs = f"http://127.0.0.1:{port}", list[IO[bytes]]()
    procs = []
    try:
        for n in range(workers):
            token = app[WORKER_TOKENS].create(f"w{n}")
            procs.append(await start_worker(base, root, f"w{n}", token, logs))
        async with aiohttp.ClientSession(base, headers={"Authorization": TOKEN}) as session:
            await wait_nodes(session, workers)
            os.sync()
            wall = await submit_and_watch(session, source, jobs, recorder)
        for job_id, step in recorder.jobs.items():
            stored = app[STORE].get(job_id)
            step.placed = stored.started_at if stored is not None else None
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await proc.wait()
        for log in logs:
            log.close()
        await server.cleanup()
        shutil.rmtree(root)
    return Run(workers, wall, dict(recorder.jobs))


async def throughput(work: Path, queue_url: str, jobs: int, seconds: int, rounds: int) -> None:
    clip = work / "clip.mkv"
    make_clip(clip, seconds)
    print(
        f"clip: {seconds} s 1280x720 HEVC, {clip.stat().st_size / 1e6:.1f} MB; {jobs} jobs, "
        f"{os.cpu_count()} cores, CPU_SLOTS=1 per worker"
    )
    jellyfin, jellyfin_port = await serve(jellyfin_app(clip))
    source = f"http://127.0.0.1:{jellyfin_port}/Videos/x/stream?static=true&api_key=t"
    walls: dict[int, list[float]] = {1: [], 2: []}
    try:
        for n in range(rounds):
            for workers in (1, 2) if n % 2 == 0 else (2, 1):
                folder = work / f"run-{n}-{workers}"
                database = _database(queue_url, n, workers)
                run = await run_once(folder, database, source, workers, jobs)
                walls[workers].append(run.wall)
                show(run)
    finally:
        await jellyfin.cleanup()
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print(
        f"median wall: 1 worker {one:.2f} s, 2 workers {two:.2f} s; "
        f"ratio 1-worker/2-workers {one / two:.2f}"
    )


def _database(cluster: str, n: int, workers: int) -> str:
    """A fresh database per run, so no run sees another's SAQ rows."""
    import psycopg

    name = f"bench_{n}_{workers}"
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.replace("/postgres?", f"/{name}?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6, help="jobs per run (default 6)")
    parser.add_argument("--duration", type=int, default=4, help="clip seconds (default 4)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (default 1)")
    parser.add_argument("--workers", default="10,100", help="simulated workers (queue part)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per queue phase")
    parser.add_argument("--upload-mb", type=int, default=200, help="file to upload (MB)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-queue", action="store_true")
    parser.add_argument("--skip-upload", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("saq").setLevel(logging.ERROR)  # simulated workers' shutdown chatter
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="ovs-bench-workers-") as folder, postgres() as url:
        work = Path(folder)
        if not args.skip_throughput:
            asyncio.run(throughput(work, url, args.jobs, args.duration, args.rounds))
        if not args.skip_queue:
            import bench_queue  # the queue part (one concern a module)

            ks = [int(k) for k in args.workers.split(",") if k]
            asyncio.run(bench_queue.queue_part(work, url, ks, args.seconds))
        if not args.skip_upload:
            import bench_transfer

            asyncio.run(bench_transfer.upload_part(work, url, args.upload_mb))
            asyncio.run(bench_transfer.relay_part(work, url))
    print(f"total: {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
