"""Jobs: their statuses and the record the API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class JobStatus(StrEnum):
    QUEUED = "queued"
    OPTIMIZING = "optimizing"
    PENDING_DOWNLOADS = "pending downloads limit"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    READY_FOR_REMOVAL = "ready-for-removal"


WAITING = frozenset({JobStatus.QUEUED, JobStatus.PENDING_DOWNLOADS})
ACTIVE = WAITING | {JobStatus.OPTIMIZING}
DOWNLOADABLE = frozenset({JobStatus.COMPLETED, JobStatus.READY_FOR_REMOVAL})
RULES_DEVICE = "rules"  # the client device of the jobs the rules make (publish/engine.py)
# What a run leaves on a job, cleared whenever the job goes back to the queue.
RUN_RESET: dict[str, Any] = {
    "progress": 0.0,
    "speed": None,
    "size": 0,
    "started_at": None,
    "plan": None,  # the next run plans again
    "node": None,  # and may run on another host
    "quality": None,  # and is measured again
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as Jellyfin (or the standalone token list) identifies them."""

    user_id: str
    name: str
    is_admin: bool


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Job:
    id: str
    owner_id: str
    owner_name: str
    device_id: str
    item_id: str
    item: dict[str, Any]
    input_url: str  # redacted: never holds a credential
    file_extension: str | None
    profile: str
    status: JobStatus
    created_at: float
    output_path: str
    progress: float = 0.0
    speed: float | None = None
    size: int = 0
    checksum: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    collected_at: float | None = None  # cancel-job on a completed ("I have it") or failed job
    backend: str | None = None
    encoder: str | None = None
    decoder: str | None = None
    fallbacks: list[str] = field(default_factory=list)  # each rung given up, and why
    retries: int = 0  # times requeued because the encoder was full
    not_before: float | None = None  # a requeued job waits until then
    wait_reason: str | None = None
    promoted_at: float | None = None  # start-job: first in the queue, in this order
    pinned_device: str | None = None  # fell back to this device and waits for a slot on it
    # each audio and subtitle track of the source: kept, converted, burned or dropped, and why
    tracks: list[dict[str, Any]] = field(default_factory=list)
    plan: str | None = None  # what the finished run did per stream (for the job page)
    command: list[str] = field(default_factory=list)  # its ffmpeg argv, secrets scrubbed
    node: str | None = None  # the worker host running it (distributed mode); None = here
    # what decides the output's bytes (jobs/outputs.py): records of one key share one file
    output_key: str | None = None
    # the record whose run makes this one's output (it waits, never dispatched); never
    # shown: it is another user's job id
    maker_id: str | None = None
    # the output's VMAF on sampled windows and the quality search's pick (jobs/assess.py);
    # None for a copy, or a job not yet done
    quality: dict[str, Any] | None = None

    @property
    def item_duration(self) -> float | None:
        """The item's length in seconds as Jellyfin lists it (RunTimeTicks), when known."""
        ticks = self.item.get("RunTimeTicks")
        if isinstance(ticks, bool) or not isinstance(ticks, int | float) or not ticks > 0:
            return None
        return float(ticks) / 10_000_000

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": str(self.status),
            "progress": round(self.progress, 2),
            "outputPath": self.output_path,
            "inputUrl": self.input_url,
            "deviceId": self.device_id,
            "itemId": self.item_id,
            "timestamp": iso(self.created_at),
            "size": self.size,
            "item": self.item,
            "profile": self.profile,
            "fileExtension": self.file_extension,
            "userName": self.owner_name,
        }
        if self.speed is not None:
            body["speed"] = round(self.speed, 3)
        if self.checksum is not None:
            body["checksum"] = self.checksum
        if self.error is not None:
            body["error"] = self.error
        for key, value in (
            ("backend", self.backend),
            ("encoder", self.encoder),
            ("decoder", self.decoder),
            ("waitReason", self.wait_reason),
            ("node", self.node),
        ):
            if value is not None:
                body[key] = value
        if self.promoted_at is not None:
            body["startRequestedAt"] = iso(self.promoted_at)
        if self.status is JobStatus.FAILED and self.collected_at is not None:
            body["dismissedAt"] = iso(self.collected_at)
        for key, items in (
            ("fallbacks", self.fallbacks),
            ("tracks", self.tracks),
            ("quality", self.quality),
        ):
            if items:
                body[key] = items
        for key, ts in (
            ("notBefore", self.not_before),
            ("startedAt", self.started_at),
            ("finishedAt", self.finished_at),
        ):
            if ts is not None:
                body[key] = iso(ts)
        return body


class StoreObserver(Protocol):
    """Told of every status change, wait reason and progress report (the metrics count
    them; observe/telemetry.py is the one observer)."""

    def changed(self, job: Job, previous: JobStatus) -> None: ...

    def waited(self, job: Job, label: str) -> None: ...

    def progressed(self, job: Job, frames: int) -> None: ...
