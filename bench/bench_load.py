"""Load: phones polling all-jobs?deviceId= every 2 s against a full store, with downloads.

The server runs as the console script in its own process (as users run it); the phones and
downloads run here. The store holds 10,000 finished jobs (bench_server.fill_store) and
1,000 waiting ones that never start (CPU_HIGH is set below any reading), so every scheduler
pass sees them. Prints p50/p99 of the polls and the errors; targets p50 <= 2 ms, p99 <= 10 ms.

    python bench/bench_load.py                      # 50 phones, 60 s
    python bench/bench_load.py --phones 10 --seconds 5 --jobs 2000 --waiting 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import bench_server  # the store filler shared with the memory benchmark
import served  # the console script as a process, as the tests start it

from optimized_versions.jobs import cache
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.jobs.store import JobStore

USERS = 5
RATE = 10e6  # bytes a second per download: a phone on good Wi-Fi
COMMAND = str(Path(sys.executable).parent / "optimized-versions")


@dataclass
class Tally:
    polls: list[float] = field(default_factory=list)  # seconds per poll
    errors: list[str] = field(default_factory=list)
    downloaded: int = 0


def _token(user: int) -> str:
    return f"load-token-user{user}-0123456789"


def prepare(root: Path, jobs: int, waiting: int) -> Path:
    """The data folder (finished and waiting jobs) and a config file with one token a user."""
    config = bench_server.bench_config(root)
    bench_server.JOBS = jobs
    bench_server.fill_store(config)
    store = JobStore(config.data_dir / "jobs.sqlite3", time.time)
    now = time.time()
    for n in range(waiting):
        job_id = str(uuid.UUID(int=(2 << 100) + n))
        job = Job(
            job_id, f"user{n % USERS}", f"user{n % USERS}", f"device-{n % 25}", f"wait-{n}",
            bench_server.jellyfin_item(n), "http://jellyfin:8096/Videos/x/stream",
            "mkv", config.default_profile, JobStatus.QUEUED, now - n,
            str(cache.output_path(config.cache_dir, job_id)),
        )  # fmt: skip
        store.add(job, "http://127.0.0.1:9/never")
    store.close()
    tokens = "".join(
        f"  - {{token: {_token(u)}, name: user{u}, admin: {str(u == 0).lower()}}}\n"
        for u in range(USERS)
    )
    path = root / "config.yaml"
    path.write_text(f"time_to_keep_files: 336\ntokens:\n{tokens}")
    return path


async def phone(base: str, n: int, until: float, tally: Tally) -> None:
    user, device = n % USERS, f"device-{n % 25}"
    headers = {"Authorization": _token(user)}
    await asyncio.sleep(2.0 * n / 50)  # phones do not poll in step
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with session.get(
                    f"{base}/all-jobs", params={"deviceId": device}, headers=headers
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        tally.errors.append(f"HTTP {resp.status}")
            except aiohttp.ClientError as exc:
                tally.errors.append(type(exc).__name__)
            tally.polls.append(time.perf_counter() - started)
            await asyncio.sleep(2.0)


async def downloader(base: str, job_ids: list[str], until: float, tally: Tally) -> None:
    """A phone downloading over Wi-Fi: at most RATE bytes a second, the next file after."""
    headers = {"Authorization": _token(0)}
    async with aiohttp.ClientSession() as session:
        for job_id in job_ids:
            async with session.get(f"{base}/download/{job_id}", headers=headers) as resp:
                started, got = time.monotonic(), 0
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    got += len(chunk)
                    tally.downloaded += len(chunk)
                    if time.monotonic() >= until:
                        return
                    await asyncio.sleep(max(0.0, started + got / RATE - time.monotonic()))


async def run(
    root: Path, phones: int, seconds: float, jobs: int, waiting: int, downloads: int = 4
) -> Tally:
    config = prepare(root, jobs, waiting)
    server = await served.serve(root, "--config", str(config), CPU_HIGH="0.01", LOG_LEVEL="WARNING")
    base, tally = server.base, Tally()
    try:
        done = [str(uuid.UUID(int=(1 << 100) + n)) for n in range(jobs) if n % 100 < 70]
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(phone(base, n, until, tally) for n in range(phones)),
            *(downloader(base, done[k::downloads], until, tally) for k in range(downloads)),
        )
    finally:
        await server.stop()
    return tally


def report(tally: Tally, seconds: float) -> str:
    polls = sorted(tally.polls)
    p50 = statistics.median(polls) * 1000
    p99 = polls[min(len(polls) - 1, int(len(polls) * 0.99))] * 1000
    return (
        f"polls {len(polls)}, errors {len(tally.errors)}, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {polls[-1] * 1000:.1f} ms (targets: p50 <= 2 ms, p99 <= 10 ms); "
        f"downloads {tally.downloaded / seconds / 1e6:.0f} MB/s in all"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phones", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--waiting", type=int, default=1_000)
    parser.add_argument("--downloads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ovs-load-") as tmp:
        tally = asyncio.run(
            run(Path(tmp), args.phones, args.seconds, args.jobs, args.waiting, args.downloads)
        )
    print(report(tally, args.seconds))
    if tally.errors:
        print("errors:", sorted(set(tally.errors)))


if __name__ == "__main__":
    main()
