"""K simulated worker hosts against the server (the console script, its own process),
with the load they cause: the server's and PostgreSQL's CPU, commits, backends, and how
long anything else waits for the server. Run through ``bench_workers.py``.

A simulated worker is SAQ's own ``Worker`` on SAQ's ``HttpQueue``, set up as
``optimized-versions worker`` sets it up (dequeue_timeout and worker_info every heartbeat,
abort check every second, progress every 2 s while it holds a job), with no ffmpeg: its job
only reports progress until it is told to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg
from saq import Worker
from saq.queue.http import HttpQueue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import served  # the console script as a process

from optimized_versions.nodes.tokens import TOKENS_FILE, WorkerTokens

HEARTBEAT = 5
REPORT_EVERY = 2.0  # nodes/worker.py's REPORT_EVERY
META = {
    "version": "bench",
    "best": {"h264": "software", "hevc": "software"},
    "slots": 1,
    "busy": None,
    "devices": [],
}
Latencies = dict[str, list[float]]


class CountingQueue(HttpQueue):
    """SAQ's HttpQueue, timing every call it makes (by kind) into ``seen``."""

    def __init__(self, *args: Any, seen: Latencies, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen = seen

    async def _send(self, kind: str, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return str(await super()._send(kind, **kwargs))
        finally:
            self.seen[kind].append(time.perf_counter() - started)


class Fleet:
    """K simulated workers in this process; each job reports progress until ``done``."""

    def __init__(self, server: str, tokens: dict[str, str]) -> None:
        self.server, self.tokens = server, tokens
        self.seen: Latencies = defaultdict(list)
        self.holding: set[str] = set()
        self.done = asyncio.Event()
        self.workers: list[Worker] = []  # type: ignore[type-arg]
        self.tasks: list[asyncio.Task[None]] = []

    async def transcode(self, ctx: Any, *, job: dict[str, Any]) -> dict[str, Any]:
        self.holding.add(job["id"])
        percent = 0.0
        while not self.done.is_set():
            percent = min(99.0, percent + 1.0)
            meta = {"percent": percent, "speed": 1.0, "size": 1 << 20, "frames": 48}
            await ctx["job"].update(progress=percent / 100, meta=meta)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), REPORT_EVERY)
        return {"error": "simulated: no ffmpeg here"}

    async def start(self) -> None:
        for name, token in self.tokens.items():
            queue = CountingQueue(
                f"{self.server}/worker/queue",
                name=f"node.{name}",
                seen=self.seen,
                headers={"Authorization": f"Bearer {token}"},
            )
            worker = Worker(
                queue,
                [("transcode", self.transcode)],
                id=name,
                concurrency=1,
                metadata=dict(META),
                dequeue_timeout=HEARTBEAT,
                timers={"worker_info": HEARTBEAT, "abort": 1, "sweep": 3600, "schedule": 3600},
            )
            worker.SIGNALS = []
            await queue.connect()
            self.workers.append(worker)
            self.tasks.append(asyncio.create_task(worker.start()))

    async def stop(self) -> None:
        for worker in self.workers:
            await worker.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for worker in self.workers:
            await worker.queue.disconnect()


class Meter:
    """Over one phase: the server process's CPU, PostgreSQL's commits, backends and CPU,
    and the server's answer time to a cheap worker call (its event loop's lag)."""

    def __init__(self, server_pid: int, url: str, postmaster: int) -> None:
        self.server, self.url = psutil.Process(server_pid), url
        self.postmaster = psutil.Process(postmaster)
        self.here = psutil.Process()  # the simulated workers' own process
        self.probes: list[float] = []

    def _pg_cpu(self) -> float:
        procs = [self.postmaster, *self.postmaster.children(recursive=True)]
        return sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())

    def _stats(self) -> tuple[int, int]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit, numbackends FROM pg_stat_database"
                " WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async def measure(self, seconds: float, base: str, token: str) -> dict[str, float]:
        cpu0, pg0, (commits0, _) = sum(self.server.cpu_times()[:2]), self._pg_cpu(), self._stats()
        here0 = sum(self.here.cpu_times()[:2])
        backends, started = [], time.perf_counter()
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base, headers=headers) as session:
            while time.perf_counter() - started < seconds:
                at = time.perf_counter()
                async with session.get("/worker/hello") as resp:
                    await resp.read()
                self.probes.append(time.perf_counter() - at)
                backends.append(self._stats()[1])
                await asyncio.sleep(0.2)
        took = time.perf_counter() - started
        commits = self._stats()[0] - commits0 - len(backends) - 1  # less our own reads
        probes = sorted(self.probes)
        return {
            "server_cpu": (sum(self.server.cpu_times()[:2]) - cpu0) / took * 100,
            "pg_cpu": (self._pg_cpu() - pg0) / took * 100,
            "client_cpu": (sum(self.here.cpu_times()[:2]) - here0) / took * 100,
            "commits": commits / took,
            "backends": max(backends),
            "lag_p50": statistics.median(probes) * 1000,
            "lag_p99": probes[int(len(probes) * 0.99)] * 1000,
        }


def show_phase(name: str, k: int, seen: Latencies, took: float, load: dict[str, float]) -> None:
    calls = sum(len(v) for v in seen.values())
    kinds = ", ".join(f"{kind} {len(v) / took:.1f}/s" for kind, v in sorted(seen.items()))
    print(f"  K={k} {name}: {calls / took:,.0f} worker calls/s ({kinds})")
    quick = [x for kind, v in seen.items() if kind != "dequeue" for x in v]
    if quick:
        quick.sort()
        print(
            f"    non-dequeue calls: p50 {statistics.median(quick) * 1000:.1f} ms, "
            f"p99 {quick[int(len(quick) * 0.99)] * 1000:.1f} ms"
        )
    print(
        f"    server CPU {load['server_cpu']:.0f}%, PostgreSQL CPU {load['pg_cpu']:.0f}%, "
        f"simulated workers' CPU {load['client_cpu']:.0f}%, "
        f"{load['commits']:.0f} commits/s, {load['backends']:.0f} backends; "
        f"/worker/hello p50 {load['lag_p50']:.1f} ms, p99 {load['lag_p99']:.1f} ms"
    )


async def fleet_run(root: Path, url: str, k: int, seconds: float, source: str) -> None:
    """One server, K workers: idle (polling), busy (each holds a job), then all finish."""
    data = root / "data"
    data.mkdir(parents=True)
    tokens = WorkerTokens(data / TOKENS_FILE)
    names = {f"sim{n}": tokens.create(f"sim{n}") for n in range(k)}
    probe = tokens.create("probe")
    tokens.close()
    env = {
        "QUEUE_URL": url,
        "LOCAL_JOBS": "false",
        "WORKER_HEARTBEAT": str(HEARTBEAT),
        "LOG_LEVEL": "WARNING",
        "MAX_CACHED_PER_USER": "0",  # one user posts all K jobs
    }
    server = await served.serve(root, **env)
    fleet = Fleet(server.base, names)
    folder = url.split("host=")[1].split("&")[0]
    postmaster = int((Path(folder) / "data" / "postmaster.pid").read_text().split()[0])
    meter = Meter(server.proc.pid, url, postmaster)
    try:
        await fleet.start()
        await asyncio.sleep(HEARTBEAT + 1)  # every worker has said who it is
        fleet.seen.clear()
        load = await meter.measure(seconds, server.base, probe)
        show_phase("idle", k, fleet.seen, seconds, load)
        for n in range(k):
            body = {"url": source, "deviceId": f"device-{n}", "itemId": f"item-{n}"}
            status, _ = await server.call("POST", "/optimize-version", json=body)
            assert status == 201, status
        started = time.perf_counter()
        while len(fleet.holding) < k and time.perf_counter() - started < 120:
            await asyncio.sleep(0.1)
        print(
            f"  K={k}: {len(fleet.holding)} jobs on workers "
            f"{time.perf_counter() - started:.1f} s after the POSTs"
        )
        fleet.seen.clear()
        load = await meter.measure(seconds, server.base, probe)
        show_phase("busy", k, fleet.seen, seconds, load)
        fleet.seen.clear()
        started = time.perf_counter()
        fleet.done.set()
        while time.perf_counter() - started < 120:
            _, jobs = await server.call("GET", "/all-jobs")
            ended = sum(job["status"] == "failed" for job in jobs)
            if ended == k and len(fleet.seen["finish"]) >= k:
                break
            await asyncio.sleep(0.1)
        took = time.perf_counter() - started
        finish = sorted(fleet.seen["finish"]) or [float("nan")]
        print(
            f"  K={k}: all {k} finished and mirrored in {took:.2f} s; finish p50 "
            f"{statistics.median(finish) * 1000:.1f} ms, max {finish[-1] * 1000:.1f} ms"
        )
    finally:
        await fleet.stop()
        await server.stop()
