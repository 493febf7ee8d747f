"""How good an encode is: VMAF against the source on sampled windows, with a decode check.

A film is not scored whole (that would cost a second encode's time): ``WINDOWS`` windows of
``WINDOW_SECONDS`` spread over it are. Each file is read from a key frame before the window
and the window's frames are cut by their own time stamps, counted from the file's first
frame (``Clock``): input seeking alone lands late in MPEG-TS and HLS, and one frame off costs
VMAF 80 points on moving pictures. The frames are then paired by number, not by time (the
two files' clocks differ: ../docs/quality.md), the encode is scaled back to the source's
size, and the source goes through what the encode's picture went through besides scaling
(deinterlacing, tone-mapping), so that VMAF scores the encoder and not the filters.

The same windows decide whether the output is whole: a window that does not decode, or
whose picture is nothing like the source's (green or corrupt frames: VMAF under
``BROKEN``), fails the output as a failed verification does.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog.backends import SOFTWARE_DEINTERLACE
from . import ffmpeg
from .filters import SOFTWARE_TONEMAP
from .inputs import window
from .plan import Plan
from .probe import MediaInfo, ProbeError, probe

WINDOWS = 5
WINDOW_SECONDS = 4.0
BROKEN = 15.0  # a window's mean VMAF under this is not a poor encode but a broken picture
STALL = 120.0  # seconds without progress before a measurement is given up
# how far before a window a seek starts, for demuxers that may land after the point asked
# (MPEG-TS, HLS): longer than most sources' key-frame interval (x264's default: 10.4 s at 24)
SEEK_MARGIN = 12.0
INDEXED = ("matroska", "mov")  # demuxers that seek to the key frame before, exactly
# VMAF's models, as the bundled libvmaf names them (":" escaped inside a filter graph); the
# phone model is the default one with its transform on (a small screen, held close)
MODELS = {
    "default": "version=vmaf_v0.6.1",
    "phone": "version=vmaf_v0.6.1\\:enable_transform=true",
}


class QualityError(Exception):
    """The output is broken: a window does not decode, or its picture is not the source's."""


class Unmeasured(Exception):
    """The measurement itself could not run (the source could not be read again, an ffmpeg
    without libvmaf); the output is not at fault."""


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    seconds: float


def windows(
    duration: float | None, count: int = WINDOWS, seconds: float = WINDOW_SECONDS
) -> list[Window]:
    """``count`` windows of ``seconds`` spread evenly over ``duration`` (each in the middle
    of its share: never the first frames, often a logo, nor the credits' last); a source
    shorter than them all is one window, the whole of it."""
    if not duration or duration <= 0:
        return [Window(0.0, seconds)]
    if duration <= count * seconds:
        return [Window(0.0, duration)]
    share = duration / count
    return [Window(round(share * (i + 0.5) - seconds / 2, 3), seconds) for i in range(count)]


@dataclass(frozen=True, slots=True)
class Clock:
    """Where a file's picture starts, to cut the same frames out of two files: a window's
    frames are those from ``first + window.start`` (less half a frame) for its length."""

    first: float = 0.0  # the first frame's time stamp, as the file keeps it
    start: float = 0.0  # the file's start: what -ss counts from
    fps: float = 25.0
    margin: float = 0.0  # seek this much earlier (a demuxer that may land late)

    @classmethod
    def of(cls, media: MediaInfo) -> Clock:
        video = media.video
        first = video.first if video is not None and video.first is not None else media.start
        rate = float(video.frame_rate or 0) if video is not None else 0.0
        margin = 0.0 if media.format.startswith(INDEXED) else SEEK_MARGIN
        return cls(first, media.start, rate if rate > 0 else 25.0, margin)

    def read(self, input_args: list[str], span: Window) -> list[str]:
        return window(input_args, self.first - self.start + span.start - self.margin)

    def cut(self, span: Window) -> str:
        start = self.first + span.start - 0.5 / self.fps
        return f"trim=start={start:.6f}:duration={span.seconds:.6f},setpts=PTS-STARTPTS"


@dataclass(frozen=True, slots=True)
class Reference:
    """The source as the encode's picture should look: its input args (ending ``-i URL``),
    its video stream and clock, the filters to apply to it, and its displayed size."""

    input_args: list[str]
    index: int
    chain: str  # "" when the encode only scaled
    size: tuple[int, int]
    clock: Clock = Clock()

    def read(self, span: Window) -> list[str]:
        return self.clock.read(self.input_args, span)

    def filters(self, span: Window | None) -> str:
        """The window cut out (None: the input is the window already), then ``chain``."""
        return ",".join(f for f in (span and self.clock.cut(span), self.chain) if f)


def reference(plan: Plan, input_args: list[str], media: MediaInfo) -> Reference | None:
    """The source as ``plan``'s encode should look; None for Dolby Vision profile 5, whose
    picture only libplacebo's reshaping gives, and for a copy."""
    if plan.copy_video or plan.dovi or media.video is None:
        return None
    parts = []
    if plan.deinterlace:
        parity = {"tff": 0, "bff": 1}.get(plan.deinterlace, -1)
        parts.append(SOFTWARE_DEINTERLACE.format(deint_mode=int(plan.field_rate), parity=parity))
    if plan.tonemap:
        parts.append(SOFTWARE_TONEMAP)
    size = media.video.display_size
    return Reference(input_args, plan.video_index, ",".join(parts), size, Clock.of(media))


@dataclass(frozen=True, slots=True)
class Quality:
    model: str  # "default" or "phone"
    mean: float  # over every sampled frame
    worst: float  # the lowest window's mean
    worst_at: float  # where that window starts, in seconds
    low: float  # the 5th percentile of the frames' scores: the worst moments
    seconds: float  # how much of the film was sampled
    frames: int

    def to_api(self) -> dict[str, Any]:
        return {
            "metric": "vmaf",
            "model": self.model,
            "mean": round(self.mean, 2),
            "worstWindow": round(self.worst, 2),
            "worstWindowAt": round(self.worst_at, 3),
            "p5": round(self.low, 2),
            "secondsSampled": round(self.seconds, 3),
            "frames": self.frames,
        }


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _threads() -> int:
    return max(1, min(os.cpu_count() or 2, 8))


def vmaf_argv(
    ffmpeg_path: str,
    distorted: list[str],
    cut: str,
    ref: Reference,
    span: Window | None,
    model: str,
    log_path: str,
) -> list[str]:
    """One window's VMAF: the encode (input 0, ``cut`` to the window when it is more, scaled
    back to the source's size) against the source's window (input 1, through ``ref.chain``;
    ``span`` None: the whole source), frames paired by number."""
    width, height = ref.size
    common = "format=yuv420p,settb=AVTB,setpts=N/FRAME_RATE/TB"
    source = ref.read(span) if span else ref.input_args
    graph = (
        f"[0:v:0]{cut + ',' if cut else ''}scale=w={width}:h={height}:flags=bicubic,{common}[d];"
        f"[1:{ref.index}]{ref.filters(span) + ',' if ref.filters(span) else ''}{common}[r];"
        f"[d][r]libvmaf=model='{MODELS[model]}':n_threads={_threads()}"
        f":log_fmt=json:log_path={log_path}"
    )
    return [ffmpeg_path, "-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1",
            *distorted, *source, "-filter_complex", graph, "-f", "null", "-"]  # fmt: skip


def decode_argv(ffmpeg_path: str, distorted: list[str], cut: str) -> list[str]:
    """Decode the encode's window and nothing else; any decoder error ends it (``explode``)."""
    return [ffmpeg_path, "-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1",
            "-xerror", "-err_detect", "explode", *distorted, "-map", "0:v:0",
            *(["-vf", cut] if cut else []), "-f", "null", "-"]  # fmt: skip


async def score(
    ffmpeg_path: str,
    distorted: list[str],
    cut: str,
    ref: Reference,
    span: Window | None,
    model: str,
    where: float,
) -> list[float]:
    """The per-frame VMAF of one window (``vmaf_argv``); QualityError when the encode's
    frames do not decode (``where``: the window's start, for the message), Unmeasured when
    the source's side failed."""
    with tempfile.TemporaryDirectory(prefix="ovs-vmaf-") as folder:
        log_path = str(Path(folder) / "vmaf.json")
        try:
            argv = vmaf_argv(ffmpeg_path, distorted, cut, ref, span, model, log_path)
            errors = await _run(argv)
            frames = _frames(log_path)
        except (ffmpeg.FFmpegError, Unmeasured) as exc:
            errors = [str(exc), *getattr(exc, "stderr", [])]
            frames = []
        if errors or not frames:
            await _decodes(ffmpeg_path, distorted, cut, where)  # raises when it is the output
            raise Unmeasured(" | ".join(errors[-3:]) or "libvmaf wrote no scores")
    return frames


async def _run(argv: list[str]) -> list[str]:
    return await ffmpeg.run(argv, _ignore, stall_timeout=STALL, stop_grace=5.0)


def _ignore(update: ffmpeg.Progress) -> None:
    """A measurement reports no progress of its own."""


async def _decodes(ffmpeg_path: str, distorted: list[str], cut: str, where: float) -> None:
    try:
        errors = await _run(decode_argv(ffmpeg_path, distorted, cut))
    except ffmpeg.FFmpegError as exc:
        errors = exc.stderr or [str(exc)]
    if errors:
        raise QualityError(f"the output does not decode at {_clock(where)}: {errors[-1][:200]}")


def _frames(log_path: str) -> list[float]:
    try:
        with open(log_path, encoding="utf-8") as handle:
            log = json.load(handle)
        return [float(f["metrics"]["vmaf"]) for f in log["frames"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unmeasured(f"libvmaf's scores cannot be read: {exc}") from None


async def measure(
    ffmpeg_path: str, output: Path, ref: Reference, spans: list[Window], model: str
) -> Quality:
    """Score ``output`` against the source on ``spans``; QualityError when it is broken."""
    try:
        clock = Clock.of(await asyncio.to_thread(probe, str(output)))
    except ProbeError as exc:
        raise QualityError(f"the output cannot be read: {exc}") from None
    scores: list[float] = []
    worst, worst_at = math.inf, 0.0
    for span in spans:
        distorted = clock.read(["-i", str(output)], span)
        frames = await score(ffmpeg_path, distorted, clock.cut(span), ref, span, model, span.start)
        mean = sum(frames) / len(frames)
        if mean < BROKEN:
            raise QualityError(
                f"the output's picture at {_clock(span.start)} is not the source's "
                f"(VMAF {mean:.1f} of 100: green or corrupt frames)"
            )
        if mean < worst:
            worst, worst_at = mean, span.start
        scores += frames
    return Quality(
        model=model,
        mean=sum(scores) / len(scores),
        worst=worst,
        worst_at=worst_at,
        low=percentile(scores, 5),
        seconds=sum(s.seconds for s in spans),
        frames=len(scores),
    )


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
