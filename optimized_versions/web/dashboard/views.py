"""What the pages show, computed from jobs and the scheduler's state: plain dicts for the
templates (stage, progress, elapsed, ETA, reasons), so that templates only lay them out."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...jobs.models import ACTIVE, WAITING, Job, JobStatus, iso

STAGES = ("queued", "fetching", "transcoding", "verifying", "ready", "collected")
FINISHED = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.READY_FOR_REMOVAL,
    }
)


def stage(job: Job) -> str:
    """Where a job is in its life, in the words the dashboard uses."""
    if job.status in WAITING:
        return "queued"
    if job.status is JobStatus.OPTIMIZING:
        if job.progress <= 0 and job.size == 0:
            return "fetching"  # ffmpeg has not reported a frame yet
        # the runner reports at most 99.9 until the output is verified and hashed
        return "verifying" if job.progress >= 99.9 else "transcoding"
    if job.status is JobStatus.COMPLETED:
        return "ready"
    if job.status is JobStatus.READY_FOR_REMOVAL:
        return "collected"
    return str(job.status)


def human_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_seconds(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def plan_summary(job: Job) -> list[str]:
    """Why each stream is copied or encoded (the planner's reasons, one line per stream),
    else what an older record tells."""
    if job.plan:
        return job.plan.split("; ")
    if job.backend is None:
        return []
    if job.backend == "copy":
        return ["streams copied: the source already fits the profile"]
    return [f"video encoded with {job.encoder or job.backend} ({job.profile})"]


# the video line of a rung's plan, in media/why.py's words
_ENCODED = re.compile(r"^video encoded \((?P<encoder>[^,()]+), (?P<decoder>[^,()]+) decode")


def running_rung(job: Job, encoders: Mapping[str, str]) -> dict[str, str | None]:
    """Backend, encoder and decoder of the rung a running job is on, from its plan: the
    record has them once the job ends, but while it runs only each rung's plan is saved.
    ``encoders``: which backend has each ffmpeg encoder. Empty when the record has them."""
    if job.status is not JobStatus.OPTIMIZING or job.backend is not None or not job.plan:
        return {}
    for line in job.plan.split("; "):
        if line.startswith("video copied"):
            return {"backend": "copy", "encoder": "copy", "decoder": "none"}
        if match := _ENCODED.match(line):
            encoder, decoder = match["encoder"], match["decoder"]
            hardware_decode = decoder if decoder != "software" else None
            backend = encoders.get(encoder, hardware_decode)
            return {"backend": backend, "encoder": encoder, "decoder": decoder}
    return {}


def timings(job: Job, now: float) -> dict[str, Any]:
    """Elapsed, ETA (from the progress so far), and the average frames' pace as speed."""
    end = job.finished_at if job.finished_at is not None else now
    elapsed = end - job.started_at if job.started_at is not None else None
    eta = None
    if job.status is JobStatus.OPTIMIZING and elapsed and 0 < job.progress < 100:
        eta = elapsed * (100 - job.progress) / job.progress
    return {
        "elapsed": human_seconds(elapsed),
        "eta": human_seconds(eta),
        "waited": human_seconds((job.started_at or now) - job.created_at),
    }


def job_view(
    job: Job,
    now: float,
    place: int | None = None,
    fps: float | None = None,
    speed: float | None = None,
) -> dict[str, Any]:
    """``fps`` and ``speed``: the run's figures as telemetry kept them (``speed``: the
    record's own while it runs)."""
    item = job.item if isinstance(job.item, dict) else {}
    title = str(item.get("Name") or item.get("SeriesName") or job.item_id)
    if item.get("SeriesName") and item.get("Name"):
        title = f"{item['SeriesName']}: {item['Name']}"
    return {
        "id": job.id,
        "title": title,
        "year": item.get("ProductionYear"),
        "user": job.owner_name,
        "device": job.device_id,
        "status": str(job.status),
        "stage": stage(job),
        "stage_index": STAGES.index(stage(job)) if stage(job) in STAGES else -1,
        "progress": round(job.progress, 1),
        "speed": None if speed is None else f"{speed:.2f}x",
        "fps": None if fps is None else f"{fps:.0f}",
        "size": human_bytes(job.size) if job.size else "-",
        "profile": job.profile,
        "node": job.node,  # the worker host it runs (or ran) on; None: this server
        "plan": plan_summary(job),
        "vmaf": vmaf_short(job),
        "quality": quality_summary(job),
        "backend": job.backend,
        "encoder": job.encoder,
        "decoder": job.decoder,
        "fallbacks": list(job.fallbacks),
        "wait_reason": job.wait_reason,
        "place": place,
        "error": job.error,
        "error_tail": (job.error or "").splitlines()[-5:],
        "active": job.status in ACTIVE,
        "waiting": job.status in WAITING,
        "can_start": job.status in WAITING,
        "can_cancel": job.status in ACTIVE,
        "can_dismiss": job.status is JobStatus.FAILED and job.collected_at is None,
        "collected": job.collected_at is not None,
        "created": iso(job.created_at),
        "started": iso(job.started_at),
        "finished": iso(job.finished_at),
        "collected_at": iso(job.collected_at),
        **timings(job, now),
    }


def vmaf_short(job: Job) -> str | None:
    """The history's figure: "VMAF 93.1" (the mean over the sampled windows)."""
    mean = (job.quality or {}).get("mean")
    return None if mean is None else f"VMAF {mean:.1f}"


def quality_summary(job: Job) -> str | None:
    """The job page's line: the measured VMAF, its worst window, and the search's pick."""
    q = job.quality
    if not q:
        return None
    if "unmeasured" in q:
        parts = [f"not measured: {q['unmeasured']}"]
    else:
        model = " (phone model)" if q.get("model") == "phone" else ""
        at = human_seconds(q.get("worstWindowAt"))
        parts = [
            f"VMAF {q['mean']:.1f}{model} over {q['secondsSampled']:.0f} s sampled; "
            f"worst window {q['worstWindow']:.1f} (at {at}), 5th percentile {q['p5']:.1f}"
        ]
    if "setting" in q:
        parts.append(f"{q['setting']} chosen for VMAF {q['target']:g} in {q['probes']} probes")
    if "note" in q:
        parts.append(q["note"])
    return " · ".join(parts)


def queue_places(jobs: list[Job]) -> dict[str, int]:
    """Each waiting job's place: start-job requests first, then oldest first (the
    scheduler's round-robin may reorder users; this is the place as a user reads it)."""
    waiting = [j for j in jobs if j.status in WAITING]
    waiting.sort(key=lambda j: (j.promoted_at is None, j.promoted_at or 0, j.created_at))
    return {job.id: place for place, job in enumerate(waiting, start=1)}


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    status: str = ""
    user: str = ""
    encoder: str = ""

    def keep(self, job: Job) -> bool:
        return (
            (not self.status or str(job.status) == self.status)
            and (not self.user or job.owner_name == self.user)
            and (not self.encoder or (job.encoder or job.backend or "") == self.encoder)
        )


def average_speeds(
    jobs: list[Job], fps: Callable[[Job], float | None], speed: Callable[[Job], float | None]
) -> list[dict[str, Any]]:
    """Average fps and speed (x real time) per encoder and profile over completed jobs
    (where this run of the server saw the job's progress: a completed record keeps neither)."""
    speeds: dict[tuple[str, str], list[float]] = defaultdict(list)
    rates: dict[tuple[str, str], list[float]] = defaultdict(list)
    for job in jobs:
        if job.status not in (JobStatus.COMPLETED, JobStatus.READY_FOR_REMOVAL):
            continue
        key = (job.encoder or job.backend or "?", job.profile)
        if pace := speed(job):
            speeds[key].append(pace)
        if (rate := fps(job)) is not None:
            rates[key].append(rate)
    return [
        {
            "encoder": encoder,
            "profile": profile,
            "jobs": max(len(speeds[(encoder, profile)]), len(rates[(encoder, profile)])),
            "speed": _mean(speeds[(encoder, profile)], "{:.2f}x"),
            "fps": _mean(rates[(encoder, profile)], "{:.0f}"),
        }
        for encoder, profile in sorted(set(speeds) | set(rates))
    ]


def _mean(values: list[float], form: str) -> str:
    return form.format(sum(values) / len(values)) if values else "-"


def iso_at(ts: float | None) -> str | None:
    return iso(ts)


def timeline(job: Job) -> list[dict[str, Any]]:
    """Queued, start requested, started, each rung given up, the end, collected."""
    events: list[dict[str, Any]] = [{"what": "queued", "when": iso(job.created_at)}]
    if job.promoted_at is not None:
        events.append({"what": "start requested", "when": iso(job.promoted_at)})
    if job.started_at is not None:
        events.append({"what": "started", "when": iso(job.started_at)})
    events.extend({"what": f"fell back: {rung}", "when": None} for rung in job.fallbacks)
    ends = {
        JobStatus.COMPLETED: "verified and ready",
        JobStatus.READY_FOR_REMOVAL: "verified and ready",
        JobStatus.FAILED: "failed",
        JobStatus.CANCELLED: "cancelled",
    }
    if job.finished_at is not None and job.status in ends:
        events.append({"what": ends[job.status], "when": iso(job.finished_at)})
    if job.collected_at is not None:
        what = "dismissed" if job.status is JobStatus.FAILED else "collected"
        events.append({"what": what, "when": iso(job.collected_at)})
    return events
