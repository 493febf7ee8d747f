"""Benchmark the server: overhead over bare ffmpeg, memory with 10,000 jobs (bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from optimized_versions.app import create_app
from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.config import Config, StaticToken
from optimized_versions.jellyfin.urls import audio_stream_index
from optimized_versions.jobs import cache
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.jobs.store import JobStore
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.plan import Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import probe
from optimized_versions.web.http.access_log import AccessLogger

TOKEN = "bench-token-0123456789"
TOKENS = (StaticToken(token=TOKEN, name="bench", admin=True),)
RATIO_TARGET = 1.05
MEMORY_TARGET_MB = 150.0
JOBS = 10_000
POLL = 0.2
KEEP_HOURS = 24.0 * 14  # the store spans 7 days: no job has expired at start-up


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free loopback port, as the CLI does (same access logger)."""
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


def jellyfin_app(clip: Path) -> web.Application:
    """A stand-in Jellyfin that serves the clip (with Range support) for every item."""

    async def stream(request: web.Request) -> web.FileResponse:
        return web.FileResponse(clip)

    app = web.Application()
    app.router.add_get("/Videos/{id}/stream", stream)
    return app


def make_clip(path: Path, seconds: int) -> None:
    """HEVC 1280x720 + AAC 5.1 in MKV: the default profile must re-encode both streams."""
    video = f"testsrc2=size=1280x720:rate=24:duration={seconds}"
    audio = f"sine=frequency=440:duration={seconds}"
    argv = [default_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", video]
    argv += ["-f", "lavfi", "-i", audio, "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0"]
    argv += ["-c:a", "aac", "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    argv += ["-x265-params", "log-level=error", str(path)]
    subprocess.run(argv, check=True)


async def bare_argv(source: str, output: Path) -> list[str]:
    """The ffmpeg command the server builds for this source, from the package's own planner."""
    profile = load_profiles()[Config().default_profile]
    backend = load_backends()["software"]
    info = await asyncio.to_thread(probe, source)  # the stand-in Jellyfin runs on this loop
    plan = make_plan(profile, info, Target(backend), audio_stream_index(source))
    if plan.copy_video:
        raise SystemExit("the clip would be copied, not transcoded: the benchmark is void")
    print(f"plan ({profile.name}, {backend.name}): {plan.describe()}")
    return build_argv(
        default_ffmpeg(), plan, profile, Target(backend), source_input(source), str(output)
    )


async def server_run(session: aiohttp.ClientSession, source: str, item_id: str) -> float:
    """POST /optimize-version, then poll job-status until completed; seconds from the POST."""
    started = time.perf_counter()
    body = {"url": source, "deviceId": "bench", "itemId": item_id}
    async with session.post("/optimize-version", json=body) as resp:
        if resp.status != 201:
            raise SystemExit(f"optimize-version answered {resp.status}: {await resp.text()}")
        job_id = (await resp.json())["id"]
    while True:
        async with session.get(f"/job-status/{job_id}") as resp:
            job = await resp.json()
        if job["status"] == "completed":
            return time.perf_counter() - started
        if job["status"] == "failed":
            raise SystemExit(f"job {job_id} failed: {job.get('error')}")
        await asyncio.sleep(POLL)


async def bare_run(argv: list[str]) -> float:
    """The same ffmpeg command, run directly (async only so that the stand-in can serve it)."""
    started = time.perf_counter()
    quiet, pipe = subprocess.DEVNULL, subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(*argv, stdin=quiet, stdout=quiet, stderr=pipe)
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"bare ffmpeg exited with {proc.returncode}: {stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def ffmpeg_cpu() -> float:
    """CPU seconds of finished children: the server's ffmpeg is this process's child too."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def measure_overhead(work: Path, rounds: int, seconds: int) -> None:
    clip, bare_output = work / "clip.mkv", work / "bare.mp4"
    started = time.perf_counter()
    make_clip(clip, seconds)
    made = time.perf_counter() - started
    print(f"clip: {seconds} s, {clip.stat().st_size / 1e6:.1f} MB, made in {made:.1f} s")
    jellyfin, jellyfin_port = await serve(jellyfin_app(clip))
    server, port = await serve(create_app(bench_config(work, max_cached_per_user=0)))
    source = f"http://127.0.0.1:{jellyfin_port}/Videos/x/stream?static=true&api_key=t"
    ratios: list[float] = []
    try:
        argv = await bare_argv(source, bare_output)
        headers = {"Authorization": TOKEN}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as session:
            for n in range(rounds):
                t: dict[str, float] = {}
                cpu: dict[str, float] = {}
                for kind in ("server", "bare") if n % 2 == 0 else ("bare", "server"):
                    async with session.delete("/delete-cache") as resp:  # old outputs go,
                        resp.raise_for_status()
                    bare_output.unlink(missing_ok=True)
                    os.sync()  # and are written back now, not during the next run
                    cpu[kind] = -ffmpeg_cpu()
                    if kind == "server":
                        t[kind] = await server_run(session, source, f"x{n}")
                    else:
                        t[kind] = await bare_run(argv)
                    cpu[kind] += ffmpeg_cpu()
                ratios.append(t["server"] / t["bare"])
                line = f"round {n + 1}: server {t['server']:.2f} s, bare {t['bare']:.2f} s"
                line += f" (ffmpeg cpu {cpu['server']:.1f} s / {cpu['bare']:.1f} s)"
                print(f"{line}, ratio {ratios[-1]:.3f}", flush=True)
    finally:
        await server.cleanup()
        await jellyfin.cleanup()
    median = statistics.median(ratios)
    verdict = "met" if median <= RATIO_TARGET else "MISSED"
    print(f"overhead: median ratio {median:.3f} (target <= {RATIO_TARGET}): {verdict}")


def jellyfin_item(n: int) -> dict[str, Any]:
    """A film as Jellyfin's BaseItemDto describes it: about 3 KB of JSON."""
    year, ids = 1950 + n % 70, [uuid.UUID(int=(n << 8) + k).hex for k in range(12)]
    item: dict[str, Any] = {"Name": f"Film {n}", "Id": ids[0], "Type": "Movie", "ServerId": ids[1]}
    item |= {"Path": f"/media/films/Film {n} ({year})/Film {n} ({year}) - 1080p.mkv"}
    item |= {"Overview": f"Film {n} follows a family across three generations. " * 8}
    item |= {"ProductionYear": year, "RunTimeTicks": 72_000_000_000 + n, "OfficialRating": "R"}
    item |= {"Genres": ["Drama", "Thriller"], "ProviderIds": {"Imdb": f"tt{n:07d}", "Tmdb": str(n)}}
    item |= {"ImageTags": {"Primary": ids[2], "Logo": ids[3]}, "BackdropImageTags": [ids[4]]}
    item["UserData"] = {"PlaybackPositionTicks": 0, "PlayCount": 0, "IsFavorite": False}
    item["People"] = [{"Name": f"Actor {k}", "Id": ids[k], "Role": f"Role {k}"} for k in range(12)]
    item["MediaStreams"] = [
        {"Index": 0, "Type": "Video", "Codec": "hevc", "Width": 1920, "Height": 1080},
        *({"Index": k, "Type": "Audio", "Codec": "eac3", "Channels": 6} for k in (1, 2)),
        {"Index": 3, "Type": "Subtitle", "Codec": "subrip", "Language": "eng"},
    ]
    item["Chapters"] = [
        {"StartPositionTicks": k * 6 * 10**9, "Name": f"Chapter {k}"} for k in range(12)
    ]
    return item


def bench_config(root: Path, **settings: Any) -> Config:
    return Config(tokens=TOKENS, cache_dir=root / "cache", data_dir=root / "data", **settings)


def fill_store(config: Config) -> dict[str, int]:
    """10,000 jobs, one a minute over 7 days, from 5 users on 25 devices; no job is waiting."""
    config.cache_dir.mkdir(parents=True)
    config.data_dir.mkdir(parents=True)
    store = JobStore(config.data_dir / "jobs.sqlite3", time.time)
    counts: dict[str, int] = {}
    now = time.time()
    for n in range(JOBS):
        job_id, created = str(uuid.UUID(int=(1 << 100) + n)), now - (JOBS - n) * 60.0
        output = cache.output_path(config.cache_dir, job_id)
        job = Job(
            job_id, f"user{n % 5}", f"user{n % 5}", f"device-{n % 25}", f"item-{n}",
            jellyfin_item(n), f"http://jellyfin:8096/Videos/item-{n}/stream?api_key=REDACTED",
            "mkv", config.default_profile, JobStatus.QUEUED, created, str(output),
        )  # fmt: skip
        store.add(job, f"http://jellyfin:8096/Videos/item-{n}/stream?api_key=secret{n}")
        kind = n % 100  # 70 completed, 10 collected, 12 failed, 8 cancelled in every 100
        if kind >= 92:
            store.transition(job, JobStatus.CANCELLED, finished_at=created + 60)
        else:
            store.transition(job, JobStatus.OPTIMIZING, started_at=created + 5)
        if kind < 80:
            size = 300_000_000 + n * 7919 % 1_200_000_000
            with output.open("wb") as handle:
                handle.truncate(size)  # sparse: the right size, no disk used
            store.transition(
                job, JobStatus.COMPLETED, progress=100.0, size=size, checksum=f"{n:064x}",
                backend="software", finished_at=created + 1800,
            )  # fmt: skip
        if 70 <= kind < 80:
            store.transition(job, JobStatus.READY_FOR_REMOVAL, collected_at=created + 3600)
        elif 80 <= kind < 92:
            error = "ffmpeg exited with code 1: Invalid data found when processing input"
            store.transition(job, JobStatus.FAILED, error=error, finished_at=created + 30)
        counts[str(job.status)] = counts.get(str(job.status), 0) + 1
    store.close()
    return counts


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def memory_child(root: Path) -> None:
    """In a fresh interpreter: serve the filled store until the parent says it is done."""
    runner, port = await serve(create_app(bench_config(root, time_to_keep_files=KEEP_HOURS)))
    print(json.dumps({"port": port, "startup_mb": maxrss_mb()}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    print(json.dumps({"peak_mb": maxrss_mb()}), flush=True)
    await runner.cleanup()


async def measure_memory(work: Path) -> None:
    root, started = work / "memory", time.perf_counter()
    counts = fill_store(bench_config(root, time_to_keep_files=KEEP_HOURS))
    print(f"store: {counts} filled in {time.perf_counter() - started:.1f} s")
    pipe = subprocess.PIPE
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--memory-child", str(root), stdin=pipe, stdout=pipe
    )
    assert child.stdin is not None and child.stdout is not None
    ready = json.loads(await child.stdout.readline() or b"null")
    if ready is None:
        raise SystemExit("the server child did not start")
    base, headers = f"http://127.0.0.1:{ready['port']}", {"Authorization": TOKEN}
    async with aiohttp.ClientSession(base, headers=headers) as session:
        for n in range(3):  # read here, not in the child: its RSS is the server's alone
            started = time.perf_counter()
            async with session.get("/all-jobs") as resp:
                resp.raise_for_status()
                body = await resp.read()
            took, count = time.perf_counter() - started, len(json.loads(body))
            print(f"all-jobs #{n + 1}: {count} jobs, {len(body) / 1e6:.1f} MB in {took:.2f} s")
        async with session.get("/statistics") as resp:
            resp.raise_for_status()
            print(f"statistics: {await resp.text()}")
    child.stdin.write(b"done\n")
    peak = json.loads(await child.stdout.readline())["peak_mb"]
    await child.wait()
    verdict = "met" if peak < MEMORY_TARGET_MB else "MISSED"
    print(f"memory: after start-up {ready['startup_mb']:.1f} MiB, peak {peak:.1f} MiB")
    print(f"memory: peak RSS {peak:.1f} MiB (target < {MEMORY_TARGET_MB:g} MB): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="server/bare pairs (default 3)")
    parser.add_argument("--duration", type=int, default=60, help="clip seconds (default 60)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        asyncio.run(memory_child(args.memory_child))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ov-bench-") as folder:
        if not args.skip_overhead:
            asyncio.run(measure_overhead(Path(folder), args.rounds, args.duration))
        if not args.skip_memory:
            asyncio.run(measure_memory(Path(folder)))
    print(f"total: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
