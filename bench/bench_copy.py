"""Job overhead where it shows: a stream copy. POST -> completed through the server, against
bare ``ffmpeg -c copy`` of the same source plus one SHA-256 pass of its output, for a small
clip (~30 MB) and a large file (~500 MB, the clip repeated); both measured in the same run.

Prints the fixed overhead in ms and where it goes (source probe, output verification, hash,
the rest: scheduling, relay, polling) and the large file's ratio (target <= 1.05), and the
start-up time of the console script with a cached probe against one that probes.

    python bench/bench_copy.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
import bench_server

from optimized_versions.app import create_app
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.probe import probe

RATIO_TARGET = 1.05


def make_sources(work: Path) -> tuple[Path, Path]:
    """H.264 1080p + AAC stereo in MP4 (the default profile copies it), ~30 MB; and the
    same clip 16 times over (``-c copy``), ~500 MB."""
    small, large, listing = work / "small.mp4", work / "large.mp4", work / "list.txt"
    video = "testsrc2=size=1920x1080:rate=24:duration=30"
    subprocess.run(
        [default_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", video,
         "-f", "lavfi", "-i", "sine=duration=30", "-c:v", "libx264", "-preset", "ultrafast",
         "-b:v", "7M", "-maxrate", "7M", "-bufsize", "14M", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-ac", "2", "-movflags", "+faststart", str(small)],
        check=True,
    )  # fmt: skip
    listing.write_text("".join(f"file '{small}'\n" for _ in range(16)))
    subprocess.run(
        [default_ffmpeg(), "-v", "error", "-y", "-f", "concat", "-safe", "0",
         "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(large)],
        check=True,
    )  # fmt: skip
    return small, large


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def bare(source: str, output: Path) -> float:
    started = time.perf_counter()
    argv = [default_ffmpeg(), "-v", "error", "-y", "-i", source, "-map", "0:v:0", "-map", "0:a:0",
            "-c", "copy", "-movflags", "+faststart", str(output)]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*argv)
    if await proc.wait() != 0:
        raise SystemExit("bare ffmpeg failed")
    await asyncio.to_thread(sha256, output)
    return time.perf_counter() - started


async def through_server(
    session: aiohttp.ClientSession, source: str, item: str
) -> tuple[float, float]:
    """Seconds from POST to ``completed``: as the client's 10 ms polls see it, and as the
    server stamped it (``finishedAt``, ms; free of the polls' granularity)."""
    sent = time.time()
    started = time.perf_counter()
    body = {"url": source, "deviceId": "bench", "itemId": item}
    async with session.post("/optimize-version", json=body) as resp:
        job_id = (await resp.json())["id"]
    while True:
        async with session.get(f"/job-status/{job_id}") as resp:
            job = await resp.json()
        if job["status"] == "completed":
            if job.get("backend") != "copy":
                raise SystemExit(f"not a copy: {job}")
            finished = datetime.fromisoformat(job["finishedAt"].replace("Z", "+00:00"))
            return time.perf_counter() - started, finished.timestamp() - sent
        if job["status"] == "failed":
            raise SystemExit(f"failed: {job['error']}")
        await asyncio.sleep(0.01)


async def parts(source: str, output: Path) -> dict[str, float]:
    """The server's own steps around ffmpeg, timed one by one on the same files."""
    timings = {}
    for name, step in (
        ("probe", lambda: probe(source)),
        ("verify", lambda: probe(str(output))),
        ("hash", lambda: sha256(output)),
    ):
        started = time.perf_counter()
        await asyncio.to_thread(step)
        timings[name] = time.perf_counter() - started
    return timings


async def measure(work: Path, rounds: int) -> None:
    small, large = make_sources(work)
    for path in (small, large):
        print(f"source {path.name}: {path.stat().st_size / 1e6:.0f} MB")
    jellyfin, jellyfin_port = await bench_server.serve(bench_server.jellyfin_app(large))
    small_app = bench_server.jellyfin_app(small)
    small_server, small_port = await bench_server.serve(small_app)
    server, port = await bench_server.serve(
        create_app(bench_server.bench_config(work, max_cached_per_user=0))
    )
    headers = {"Authorization": bench_server.TOKEN}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as session:
            for name, source_port in (("small", small_port), ("large", jellyfin_port)):
                source = f"http://127.0.0.1:{source_port}/Videos/x/stream?static=true&api_key=t"
                overheads, stamped, ratios = [], [], []
                for n in range(rounds):
                    async with session.delete("/delete-cache") as resp:
                        resp.raise_for_status()
                    os.sync()
                    served, at_server = await through_server(session, source, f"{name}{n}")
                    plain = await bare(source, work / "bare.mp4")
                    overheads.append(served - plain)
                    stamped.append(at_server - plain)
                    ratios.append(served / plain)
                    print(f"{name} round {n + 1}: server {served:.3f} s, bare+sha256 "
                          f"{plain:.3f} s, ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
                steps = await parts(source, work / "bare.mp4")
                fixed = statistics.median(overheads)
                rest = fixed - steps["probe"] - steps["verify"]
                print(
                    f"{name}: overhead {fixed * 1000:.0f} ms (probe {steps['probe'] * 1000:.0f}, "
                    f"verify {steps['verify'] * 1000:.0f}, scheduling/relay/polling "
                    f"{rest * 1000:.0f}; the hash, {steps['hash'] * 1000:.0f} ms, is in both), "
                    f"median ratio {statistics.median(ratios):.3f}; by the server's own "
                    f"finishedAt (no polling): overhead {statistics.median(stamped) * 1000:.0f} ms"
                )
    finally:
        await server.cleanup()
        await jellyfin.cleanup()
        await small_server.cleanup()


async def startup(work: Path) -> None:
    """Seconds from exec to the first answer: with a cached probe, and probing anew."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from served import serve  # the tests' console-script helper

    times = {}
    for kind in ("probing", "cached"):
        started = time.perf_counter()
        server = await serve(work / "startup")
        times[kind] = time.perf_counter() - started
        await server.stop()
    print(
        f"start-up: {times['cached']:.2f} s with a cached probe, {times['probing']:.2f} s "
        f"probing (ratio {times['cached'] / times['probing']:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ovs-copy-") as tmp:
        (Path(tmp) / "startup").mkdir()
        asyncio.run(startup(Path(tmp)))
        asyncio.run(measure(Path(tmp), args.rounds))


if __name__ == "__main__":
    main()
