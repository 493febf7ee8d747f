"""Benchmark the scheduler: N CPU jobs at once, load-aware gating vs none (bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from bench_server import jellyfin_app, make_clip, serve

from optimized_versions.app import create_app
from optimized_versions.config import Config, StaticToken

TOKEN = "bench-token-0123456789"
TOKENS = (StaticToken(token=TOKEN, name="bench", admin=True),)
POLL = 0.25
MIN_FREE_SPACE = 256 * 1024**2  # the default 2 GiB floor would hold jobs on a small disk
KINDS = ("load-aware", "no gating")


@dataclass(frozen=True, slots=True)
class Run:
    wall: float  # seconds from the first POST until every job is completed
    first: float  # seconds from its POST until the first job to finish is completed
    peak: int  # most jobs seen optimizing at once
    cpu: float  # the host's mean CPU percent over the polls


def settings(kind: str, jobs: int) -> dict[str, Any]:
    """Both let N jobs in through MAX_CONCURRENT_JOBS; only the load-aware gating differs."""
    common: dict[str, Any] = {
        "max_concurrent_jobs": jobs,
        "max_cached_per_user": 0,
        "min_free_space": MIN_FREE_SPACE,
        "encoder_preference": "software",  # libx264 on the CPU, even where a GPU is present
    }
    if kind == "no gating":
        return common | {"cpu_slots": jobs, "cpu_high": 100.0, "memory_low": 0.0}
    return common  # Config defaults: one CPU slot per four cores, cpu_high 85, memory_low 10


def bench_config(root: Path, kind: str, jobs: int) -> Config:
    data, cache = root / "data", root / "cache"
    return Config(tokens=TOKENS, cache_dir=cache, data_dir=data, **settings(kind, jobs))


async def submit(session: aiohttp.ClientSession, source: str, jobs: int) -> dict[str, float]:
    """POST N jobs back to back, each its own item and device; job id -> time of its POST."""
    posted: dict[str, float] = {}
    for n in range(jobs):
        at = time.perf_counter()
        body = {"url": source, "deviceId": f"device-{n}", "itemId": f"item-{n}"}
        async with session.post("/optimize-version", json=body) as resp:
            if resp.status != 201:
                raise SystemExit(f"optimize-version answered {resp.status}: {await resp.text()}")
            posted[(await resp.json())["id"]] = at
    return posted


async def watch(session: aiohttp.ClientSession, posted: dict[str, float], started: float) -> Run:
    """Poll GET /all-jobs until every job is completed, sampling the host's CPU meanwhile."""
    # psutil.cpu_percent keeps its last reading per thread: sampling on the event loop's
    # thread would reset the server's own load reader, so one worker thread does it.
    loop, peak, cpu, first = asyncio.get_running_loop(), 0, [], None
    with ThreadPoolExecutor(max_workers=1) as sampler:
        await loop.run_in_executor(sampler, psutil.cpu_percent)  # starts the measurement
        while True:
            await asyncio.sleep(POLL)
            async with session.get("/all-jobs") as resp:
                resp.raise_for_status()
                jobs = {job["id"]: job for job in await resp.json()}
            now = time.perf_counter()
            cpu.append(await loop.run_in_executor(sampler, psutil.cpu_percent))
            if failed := [job for job in jobs.values() if job["status"] == "failed"]:
                raise SystemExit(f"job {failed[0]['id']} failed: {failed[0].get('error')}")
            peak = max(peak, sum(job["status"] == "optimizing" for job in jobs.values()))
            done = [key for key in posted if jobs[key]["status"] == "completed"]
            if done and first is None:
                first = min(now - posted[key] for key in done)
            if first is not None and len(done) == len(posted):
                return Run(now - started, first, peak, statistics.mean(cpu))


async def run_once(root: Path, source: str, kind: str, jobs: int) -> Run:
    """A fresh server on a fresh data/cache folder: submit N jobs, wait for them all."""
    server, port = await serve(create_app(bench_config(root, kind, jobs)))
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": TOKEN}
    try:
        async with aiohttp.ClientSession(base, headers=headers) as session:
            os.sync()  # the clip and earlier outputs are written back now, not during the run
            started = time.perf_counter()
            return await watch(session, await submit(session, source, jobs), started)
    finally:
        await server.cleanup()
        shutil.rmtree(root)


def show(n: int, runs: dict[str, Run]) -> None:
    parts = []
    for kind in KINDS:  # the same order every round, whichever ran first
        run = runs[kind]
        parts.append(f"{kind} {run.wall:.2f} s (first {run.first:.2f} s,")
        parts[-1] += f" peak {run.peak} optimizing, cpu {run.cpu:.0f}%)"
    print(f"round {n + 1}: " + "; ".join(parts), flush=True)


def summary(results: dict[str, list[Run]]) -> None:
    for kind, runs in results.items():
        wall = statistics.median(run.wall for run in runs)
        first = statistics.mean(run.first for run in runs)
        peak = statistics.median(run.peak for run in runs)
        cpu = statistics.median(run.cpu for run in runs)
        line = f"{kind}: median wall {wall:.2f} s, median peak {peak:g} optimizing,"
        print(f"{line} median cpu {cpu:.0f}%, mean time to first download {first:.2f} s")
    aware, free = results["load-aware"], results["no gating"]
    wall = statistics.median(r.wall for r in aware) / statistics.median(r.wall for r in free)
    first = statistics.mean(r.first for r in aware) / statistics.mean(r.first for r in free)
    print(f"ratio load-aware/no gating: wall {wall:.3f}, time to first download {first:.3f}")


async def measure(work: Path, jobs: int, rounds: int, seconds: int) -> None:
    clip, started = work / "clip.mkv", time.perf_counter()
    make_clip(clip, seconds)
    made = time.perf_counter() - started
    print(f"clip: {seconds} s, {clip.stat().st_size / 1e6:.1f} MB, made in {made:.1f} s")
    print(f"{jobs} jobs at once on {os.cpu_count()} cores; min_free_space {MIN_FREE_SPACE} bytes")
    jellyfin, jellyfin_port = await serve(jellyfin_app(clip))
    source = f"http://127.0.0.1:{jellyfin_port}/Videos/x/stream?static=true&api_key=t"
    results: dict[str, list[Run]] = {kind: [] for kind in KINDS}
    try:
        for n in range(rounds):
            runs: dict[str, Run] = {}
            for kind in KINDS if n % 2 == 0 else KINDS[::-1]:
                folder = work / f"{kind.replace(' ', '-')}-{n}"
                runs[kind] = await run_once(folder, source, kind, jobs)
                results[kind].append(runs[kind])
            show(n, runs)
    finally:
        await jellyfin.cleanup()
    summary(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs at once (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (default 2)")
    parser.add_argument("--duration", type=int, default=15, help="clip seconds (default 15)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ov-bench-") as folder:
        asyncio.run(measure(Path(folder), args.jobs, args.rounds, args.duration))
    print(f"total: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
