"""Aiming an encode at a quality: per title, the rate-control value (CRF, NVENC's CQ, QSV's
or VAAPI's global quality) that reaches a profile's ``target_vmaf`` with the fewest bits,
within its bit-rate cap.

A few probes encode the sampled windows (media/quality.py) at one value each and score
them; VMAF falls as the value rises, so each probe narrows the bracket around the target
(a secant step, on the grid of the encoder's step). The pick is the highest value whose
probe reached the target; when none did within the cap, the best the cap allows, and the
job says so ("capped at 8 Mb/s: VMAF 88").
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog.backends import TargetSpec
from ..catalog.profiles import Profile
from . import ffmpeg, quality
from .plan import Plan, Target, build_argv
from .quality import Reference, Window
from .tracks import Tracks

MAX_PROBES = 6
CLOSE = 0.5  # a pick this far under the target still counts as reaching it (no note)
SLOPE = 1.2  # VMAF points lost per unit of the value, before two probes tell
JUMP = 6.0  # the furthest one probe moves from the last (VMAF flattens near the top)
RATE_STEP = 0.89  # bits kept per step of the value up (x264: +6 CRF halves them)
OVER_CAP = 1.05  # a probe over the cap by more than this misses it (encoders without one)
# a source shorter than this is encoded at the profile's quality: its probes would cost
# more than the whole encode
SEARCH_MIN_SECONDS = 30.0


class SearchFailed(Exception):
    """A probe could not be encoded or scored: the encode aims at the profile's rate."""


@dataclass(frozen=True, slots=True)
class Probe:
    value: float
    vmaf: float  # pooled over the windows' frames
    bit_rate: int  # the video's, over the windows


@dataclass(frozen=True, slots=True)
class Pick:
    value: float
    vmaf: float
    bit_rate: int
    probes: tuple[Probe, ...]
    note: str | None = None  # why the target was not reached

    def to_api(self, goal: float, option: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "target": goal,
            "setting": f"{option} {self.value:g}",
            "sampledVmaf": round(self.vmaf, 2),
            "probes": len(self.probes),
        }
        return {**body, "note": self.note} if self.note else body


def option_name(spec: TargetSpec) -> str:
    """The option the search sets, as a person reads it: ``crf``, ``cq``, ``global_quality``."""
    at = spec.args.index("{quality}")
    return spec.args[at - 1].lstrip("-") if at else "quality"


def _grid(spec: TargetSpec, value: float) -> float:
    steps = round((value - spec.low) / spec.step)
    return min(spec.high, max(spec.low, spec.low + steps * spec.step))


def _slope(probes: list[Probe], default: float) -> float:
    """VMAF lost per unit of value, from the two probes nearest each other, else ``default``."""
    if len(probes) < 2:
        return default
    a, b = sorted(probes, key=lambda p: p.value)[:2]
    drop = (a.vmaf - b.vmaf) / (b.value - a.value)
    return min(4.0, max(0.05, drop)) if drop > 0 else default


def next_value(tried: dict[float, Probe], spec: TargetSpec, goal: float) -> float | None:
    """The next value to probe, or None when the tried ones settle it: the highest value
    that reaches the goal is one step under the lowest that misses it, or at an end of the
    range. Never stopped early for a probe close above the goal: near the top VMAF hardly
    moves while the bits still fall (a still picture: 0.4 points over six CRF steps)."""
    passing = [p for p in tried.values() if p.vmaf >= goal]
    best = max(passing, key=lambda p: p.value, default=None)  # reaches it, fewest bits
    above = [p for p in tried.values() if p.vmaf < goal and (best is None or p.value > best.value)]
    miss = min(above, key=lambda p: p.value, default=None)  # misses it, most bits
    if best is not None and miss is not None:
        x = best.value + (best.vmaf - goal) * (miss.value - best.value) / (best.vmaf - miss.vmaf)
        value = min(miss.value - spec.step, max(best.value + spec.step, _grid(spec, x)))
        return value if best.value < value < miss.value else None
    if best is not None:  # every probe reached it: fewer bits
        if best.value >= spec.high:
            return None
        slope = _slope(passing, SLOPE)
        jump = min((best.vmaf - goal) / slope, JUMP)
        return max(_grid(spec, best.value + jump), best.value + spec.step)
    assert miss is not None  # every probe missed it: more bits
    if miss.value <= spec.low:
        return None
    slope = _slope(list(tried.values()), SLOPE)
    jump = min((goal - miss.vmaf) / slope, JUMP)
    return min(_grid(spec, miss.value - jump), miss.value - spec.step)


async def search(
    probe: Callable[[float], Awaitable[Probe]],
    spec: TargetSpec,
    goal: float,
    start: float,
    cap: int,
) -> Pick:
    """The value for ``goal`` within ``cap`` (bit/s), in at most MAX_PROBES probes."""
    tried: dict[float, Probe] = {}
    value: float | None = _grid(spec, start)
    while value is not None and value not in tried and len(tried) < MAX_PROBES:
        tried[value] = await probe(value)
        value = next_value(tried, spec, goal)
    passing = [p for p in tried.values() if p.vmaf >= goal]
    chosen = max(passing, key=lambda p: p.value, default=None) or min(
        tried.values(), key=lambda p: p.value
    )
    over = chosen.bit_rate > cap * OVER_CAP
    # an encoder that holds no cap (QSV's ICQ, VAAPI's CQP): fewer bits until it fits
    while (
        chosen.bit_rate > cap * OVER_CAP
        and chosen.value < spec.high
        and len(tried) < MAX_PROBES + 2
    ):
        units = math.log(cap / chosen.bit_rate) / math.log(RATE_STEP)
        steps = max(1, math.ceil(units / spec.step))
        value = _grid(spec, chosen.value + steps * spec.step)
        chosen = tried[value] if value in tried else await probe(value)
        tried[value] = chosen
    note = None
    if chosen.vmaf < goal - CLOSE:
        if over or chosen.bit_rate >= cap * 0.85:
            note = f"capped at {cap / 1e6:g} Mb/s: VMAF {chosen.vmaf:.0f}"
        else:
            note = (
                f"at its most bits ({option_name(spec)} {chosen.value:g}): VMAF {chosen.vmaf:.0f}"
            )
    return Pick(chosen.value, chosen.vmaf, chosen.bit_rate, tuple(tried.values()), note)


async def aim(
    ffmpeg_path: str,
    plan: Plan,
    profile: Profile,
    target: Target,
    ref: Reference,
    spans: list[Window],
) -> Pick:
    """Search ``target``'s encoder for ``profile``'s target VMAF on ``spans`` of the source
    (``ref``); SearchFailed when a probe cannot be made."""
    spec = target.backend.encoders[plan.codec].target
    goal = profile.video.target_vmaf
    assert spec is not None and goal is not None
    # the picture only: no audio, subtitles or title, the same filters and encoder
    bare = dataclasses.replace(plan, tracks=Tracks(), audio=None, audio_filter=None, title=None)
    cap = plan.bit_rate or profile.video.max_bitrate

    async def probe(value: float) -> Probe:
        scores: list[float] = []
        size = 0
        with tempfile.TemporaryDirectory(prefix="ovs-probe-") as folder:
            for n, span in enumerate(spans):
                out = Path(folder) / f"{n}.mp4"
                aimed = dataclasses.replace(bare, quality=value)
                argv = build_argv(ffmpeg_path, aimed, profile, target, ref.read(span), str(out))
                at = argv.index("-vf") + 1  # the window cut out first, then the plan's chain
                argv[at] = f"{ref.clock.cut(span)},{argv[at]}"
                try:
                    await ffmpeg.run(
                        argv, _ignore, stall_timeout=quality.STALL, stop_grace=5.0,
                        env=target.backend.env,
                    )  # fmt: skip
                    scores += await quality.score(
                        ffmpeg_path, ["-i", str(out)], "", ref, span,
                        profile.video.vmaf_model, span.start,
                    )  # fmt: skip
                except (ffmpeg.FFmpegError, quality.QualityError, quality.Unmeasured) as exc:
                    tail = getattr(exc, "stderr", [])[-1:]
                    raise SearchFailed(
                        f"{option_name(spec)} {value:g}: {exc} {' '.join(tail)}".strip()
                    ) from None
                size += out.stat().st_size
        seconds = sum(s.seconds for s in spans)
        return Probe(value, sum(scores) / len(scores), int(size * 8 / seconds))

    return await search(probe, spec, goal, float(profile.video.quality), cap)


def _ignore(update: ffmpeg.Progress) -> None:
    """A probe reports no progress of its own."""
