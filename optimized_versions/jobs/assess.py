"""A rung's quality steps: before its encode, the search for the rate-control value that
reaches the profile's target VMAF (media/target.py); after it, the output measured on the
same sampled windows (media/quality.py), which fails a broken output as verification does."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..catalog.profiles import Profile
from ..errors import TranscodeError
from ..media import quality
from ..media.plan import Plan, Target
from ..media.target import SEARCH_MIN_SECONDS, SearchFailed, aim, option_name

log = logging.getLogger(__name__)


async def aim_at(
    ffmpeg_path: str,
    job_id: str,
    plan: Plan,
    profile: Profile,
    target: Target,
    ref: quality.Reference | None,
    spans: list[quality.Window],
    duration: float | None,
) -> tuple[Plan, dict[str, Any]]:
    """``plan`` at the rate-control value that reaches the profile's target VMAF, and
    what the search found (for the job's quality); as it was when the profile has no
    target, the encoder cannot aim at one, or the source is too short to search."""
    spec = target.backend.encoders[plan.codec].target if not plan.copy_video else None
    goal = profile.video.target_vmaf
    if ref is None or spec is None or goal is None or (duration or 0) < SEARCH_MIN_SECONDS:
        return plan, {}
    try:
        pick = await aim(ffmpeg_path, plan, profile, target, ref, spans)
    except SearchFailed as exc:
        log.warning("job %s: no quality search on %s (%s)", job_id, target.describe(), exc)
        return plan, {"target": goal, "note": f"no search: {exc}"[:300]}
    log.info("job %s: %s %g for VMAF %g", job_id, option_name(spec), pick.value, goal)
    return dataclasses.replace(plan, quality=pick.value), pick.to_api(goal, option_name(spec))


async def measured(
    ffmpeg_path: str,
    job_id: str,
    output: Path,
    ref: quality.Reference | None,
    spans: list[quality.Window],
    profile: Profile,
) -> dict[str, Any] | None:
    """The output's measured quality (None for a copy); TranscodeError when the
    measurement finds it broken, as a failed verification."""
    if ref is None:
        return None
    try:
        found = await quality.measure(ffmpeg_path, output, ref, spans, profile.video.vmaf_model)
    except quality.QualityError as exc:
        raise TranscodeError(str(exc)) from None
    except quality.Unmeasured as exc:
        log.warning("job %s: quality not measured (%s)", job_id, exc)
        return {"metric": "vmaf", "unmeasured": str(exc)[:300]}
    return found.to_api()
