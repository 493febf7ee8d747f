"""Quality per byte: our default encode, our target mode and Jellyfin's live-transcode argv on
five generated 1080p clip types, scored with VMAF on the whole clip (bench/README.md).

For each clip: Jellyfin's argv first (its VMAF becomes the target mode's target), then the
default profile (CRF 23, preset medium), then the target mode (the search on sampled windows,
then the whole encode at its pick). Prints bytes, pooled mean VMAF, the worst 4 s window and
the encode's wall time, and the ratios the issue sets goals for, as medians over the clips.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import Profile, load_profiles
from optimized_versions.media import ffmpeg, quality, target
from optimized_versions.media.plan import Plan, Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import probe

FPS = 25
SIZE = "1920x1080"
# lavfi graphs, each a kind of film (before the lossless intermediate)
# a still frame of detail, as a camera sees it: blurred random texture (made once, looped)
TEXTURE = (  # blobs of random texture in soft colours, like gravel or leaves
    f"nullsrc=s={SIZE}:r={FPS},format=yuv420p,"
    "geq=lum='random(1)*255':cb='128+60*sin(X/300)':cr='128+60*cos(Y/200)',"
    "gblur=sigma=5,eq=contrast=6,trim=end_frame=1,loop=loop=-1:size=1,"
    f"setpts=N/{FPS}/TB"
)
CLIPS = {
    "talking head": (  # a still scene, a small moving part, a little sensor noise
        f"{TEXTURE},drawbox=x=880:y=500+25*sin(t*7):w=160:h=50:color=0xa05050:t=fill,"
        "noise=alls=3:allf=t"
    ),
    "fast motion": f"{TEXTURE},scroll=h=0.012:v=0.005,hue=H=t*0.5",  # a fast pan
    "film grain": f"testsrc2=s={SIZE}:r={FPS},noise=alls=25:allf=t+u",  # detail and grain
    "flat animation": (  # flat shapes with black outlines over a slowly moving sky
        f"gradients=s={SIZE}:r={FPS}:speed=0.01:c0=0x87ceeb:c1=0xe0f0ff,"
        "drawbox=x=mod(t*400\\,1920):y=300:w=360:h=360:color=0xffd700:t=fill,"
        "drawbox=x=mod(t*400\\,1920):y=300:w=360:h=360:color=black:t=8,"
        "drawbox=x=1500-mod(t*250\\,1500):y=700:w=500:h=220:color=0xe04040:t=fill,"
        "drawbox=x=1500-mod(t*250\\,1500):y=700:w=500:h=220:color=black:t=8,"
        "drawbox=x=0:y=960:w=1920:h=120:color=0x2e8b57:t=fill"
    ),
    "dark scene": (  # a slow pan in the dark, with some noise
        f"{TEXTURE},scroll=h=0.002,eq=brightness=-0.3:contrast=0.4,noise=alls=5:allf=t"
    ),
}
# Jellyfin's live transcode to the same limits (EncodingHelper, docs/backends.md): libx264
# veryfast, CRF 23, -maxrate/-bufsize 2x, its x264 speed options and -sc_threshold 0. Its
# HLS key frames every few seconds are left out: fewer key frames only favour its bytes.
JELLYFIN = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-maxrate", "8000000",
            "-bufsize", "16000000", "-profile:v", "high", "-x264opts",
            "subme=0:me_range=16:rc_lookahead=10:me=hex:open_gop=0", "-sc_threshold", "0",
            "-pix_fmt", "yuv420p"]  # fmt: skip
FILM_SECONDS = 90 * 60  # what the cost is projected to: a feature film


def ff(*args: str) -> None:
    subprocess.run([ffmpeg.default_ffmpeg(), "-v", "error", "-y", *args], check=True)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def whole_clip(encode: Path, source: Path, seconds: float) -> tuple[float, float, float]:
    """Pooled mean VMAF of every frame, the worst 4 s window's mean, the 5th percentile."""
    ref = quality.Reference(source_input(str(source)), 0, "", (1920, 1080))
    with tempfile.TemporaryDirectory() as tmp:
        log = str(Path(tmp) / "vmaf.json")
        argv = quality.vmaf_argv(
            ffmpeg.default_ffmpeg(), ["-i", str(encode)], "", ref, None, "default", log
        )
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        frames = [f["metrics"]["vmaf"] for f in json.loads(Path(log).read_text())["frames"]]
    span = min(len(frames), 4 * FPS)
    windows = [sum(frames[i : i + span]) / span for i in range(0, len(frames) - span + 1, FPS)]
    return sum(frames) / len(frames), min(windows), quality.percentile(frames, 5)


@dataclasses.dataclass
class Row:
    clip: str
    mode: str
    bytes: int
    vmaf: float
    worst: float
    p5: float
    seconds: float  # the encode's wall time
    extra: float = 0.0  # the search (target mode) and the job's measurement
    measured: float = 0.0  # the job's measurement alone


def ours(
    source: Path, out: Path, profile: Profile, plan: Plan, rung: Target, value: float | None
) -> float:
    aimed = dataclasses.replace(plan, quality=value)
    argv = build_argv(
        ffmpeg.default_ffmpeg(), aimed, profile, rung, source_input(str(source)), str(out)
    )
    return timed(argv)


def run_clip(
    name: str, graph: str, folder: Path, seconds: float, spans: list[quality.Window]
) -> list[Row]:
    source = folder / f"{name.replace(' ', '-')}.mkv"  # lossless FFV1: never copied
    ff("-f", "lavfi", "-i", f"{graph},trim=duration={seconds},format=yuv420p",
       "-c:v", "ffv1", "-slices", "4", str(source))  # fmt: skip
    info = probe(str(source))
    assert info.video is not None
    rows = []
    jf = folder / "jellyfin.mp4"
    spent = timed(
        [ffmpeg.default_ffmpeg(), "-v", "error", "-y", "-i", str(source), *JELLYFIN, str(jf)]
    )
    rows.append(Row(name, "jellyfin", jf.stat().st_size, *whole_clip(jf, source, seconds), spent))

    base = load_profiles()["h264-1080p"]
    rung = Target(load_backends()["software"])
    plan = make_plan(base, info, rung)
    mine = folder / "default.mp4"
    spent = ours(source, mine, base, plan, rung, None)
    rows.append(
        Row(name, "default", mine.stat().st_size, *whole_clip(mine, source, seconds), spent)
    )

    goal = math.floor(rows[0].vmaf * 10) / 10  # Jellyfin's quality on this clip
    profile = dataclasses.replace(base, video=dataclasses.replace(base.video, target_vmaf=goal))
    ref = quality.reference(plan, source_input(str(source)), info)
    assert ref is not None
    started = time.perf_counter()
    pick = asyncio.run(target.aim(ffmpeg.default_ffmpeg(), plan, profile, rung, ref, spans))
    searched = time.perf_counter() - started
    aimed = folder / "target.mp4"
    spent = ours(source, aimed, profile, plan, rung, pick.value)
    started = time.perf_counter()
    asyncio.run(quality.measure(ffmpeg.default_ffmpeg(), aimed, ref, spans, "default"))
    measured = time.perf_counter() - started
    row = Row(
        name, f"target {goal:g}", aimed.stat().st_size, *whole_clip(aimed, source, seconds), spent
    )
    row.extra, row.measured = searched + measured, measured
    rows.append(row)
    note = f"; {pick.note}" if pick.note else ""
    print(f"  {name}: crf {pick.value:g} after {len(pick.probes)} probes ({searched:.0f} s), "
          f"measured in {measured:.1f} s{note}", flush=True)  # fmt: skip
    source.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="each clip's length")
    parser.add_argument("--clips", nargs="*", default=list(CLIPS), help="a subset, by name")
    args = parser.parse_args()
    # sampled as a film is, scaled down: 3 windows of 1.6 s in 8 s (a film: 5 x 4 s)
    spans = quality.windows(args.seconds, count=3, seconds=round(args.seconds / 5, 2))
    sampled = sum(s.seconds for s in spans)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.clips:
            rows += run_clip(name, CLIPS[name], Path(tmp), args.seconds, spans)
    head = ("clip", "mode", "MB", "VMAF", "worst 4s", "p5", "encode s")
    print("\n{:<15} {:<13} {:>7} {:>6} {:>8} {:>6} {:>9}".format(*head))
    for r in rows:
        print(f"{r.clip:<15} {r.mode:<13} {r.bytes / 1e6:7.2f} {r.vmaf:6.2f} {r.worst:8.2f} "
              f"{r.p5:6.2f} {r.seconds:9.1f}")  # fmt: skip
    by = {(r.clip, r.mode.split()[0]): r for r in rows}
    names = list(dict.fromkeys(r.clip for r in rows))
    size = [by[c, "target"].bytes / by[c, "jellyfin"].bytes for c in names]
    miss = [abs(by[c, "target"].vmaf - float(by[c, "target"].mode.split()[1])) for c in names]
    cost = [by[c, "target"].extra / by[c, "target"].seconds for c in names]
    # the search and the measurement cost per sampled second; the encode per film second
    film = [
        (by[c, "target"].extra / sampled * 20)
        / (by[c, "target"].seconds / args.seconds * FILM_SECONDS)
        for c in names
    ]
    alone = [
        (by[c, "target"].measured / sampled * 20)
        / (by[c, "target"].seconds / args.seconds * FILM_SECONDS)
        for c in names
    ]
    default = [by[c, "default"].bytes / by[c, "jellyfin"].bytes for c in names]
    gain = [by[c, "default"].vmaf - by[c, "jellyfin"].vmaf for c in names]
    print("\nper clip: " + ", ".join(names))
    median = statistics.median
    for label, values, summary in (
        (
            "target bytes / Jellyfin's at its VMAF",
            size,
            f"median {median(size):.2f}x (goal <= 0.80x)",
        ),
        ("|target VMAF - its target|, whole clip", miss, f"worst {max(miss):.2f} (goal <= 1.5)"),
        ("search + measurement / encode, clip", cost, f"median {median(cost):.2f}x"),
        ("... projected to a 90 min film", film, f"median {median(film):.3f}x (goal <= 0.25x)"),
        ("... the measurement alone", alone, f"median {median(alone):.3f}x (goal <= 0.05x)"),
        ("default bytes / Jellyfin's", default, f"median {median(default):.2f}x"),
        ("default VMAF - Jellyfin's", gain, f"median {median(gain):+.2f}"),
    ):
        print(f"{label:<40} {_list(values)}  {summary}")
    ok = median(size) <= 0.80 and max(miss) <= 1.5 and median(film) <= 0.25
    print("goals met" if ok else "goals NOT met")
    sys.exit(0 if ok else 1)


def _list(values: list[float]) -> str:
    return " ".join(f"{v:5.2f}" for v in values)


if __name__ == "__main__":
    main()
