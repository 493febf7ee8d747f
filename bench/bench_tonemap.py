"""Benchmark the CPU tone-map order: tone-map at 4K then scale (before issue 12) against
the planner's chain, scale first then tone-map (bench/README.md)."""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.filters import SOFTWARE_TONEMAP
from optimized_versions.media.plan import Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import probe

TARGET = 1.5  # scaling first must be at least this many times faster (decode is common)


def make_clip(path: Path, frames: int) -> None:
    """4K HEVC 10-bit tagged PQ (HDR10), as a UHD film is."""
    source = f"testsrc2=size=3840x2160:rate=24,trim=end_frame={frames}"
    subprocess.run(
        [default_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", source,
         "-vf", "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc",
         "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast",
         "-x265-params", "log-level=error", str(path)],
        check=True,
    )  # fmt: skip


def chains(clip: Path) -> dict[str, str]:
    profile, target = load_profiles()["h264-1080p"], Target(load_backends()["software"])
    plan = make_plan(profile, probe(str(clip)), target)
    argv = build_argv("ffmpeg", plan, profile, target, source_input(str(clip)), "-")
    planned = argv[argv.index("-vf") + 1]
    before = f"{SOFTWARE_TONEMAP},scale=w=1920:h=1080:flags=lanczos,format=yuv420p"
    return {"tone-map then scale": before, "scale then tone-map (planner)": planned}


def timed(clip: Path, chain: str) -> float:
    """Decode, filter and drop the frames (no encoder: the filters are what differs)."""
    started = time.perf_counter()
    subprocess.run(
        [default_ffmpeg(), "-v", "error", "-i", str(clip), "-vf", chain, "-f", "null", "-"],
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "hdr10-4k.mkv"
        make_clip(clip, args.frames)
        best = {}
        for name, chain in chains(clip).items():
            best[name] = min(timed(clip, chain) for _ in range(args.rounds))
            print(f"{name:32s} {best[name]:6.2f} s   {chain}")
    slow, fast = best.values()
    ratio = slow / fast
    print(f"{args.frames} 4K frames: {slow:.2f} s vs {fast:.2f} s: {ratio:.1f}x (target {TARGET}x)")
    raise SystemExit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
