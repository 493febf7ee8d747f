"""Counters for /metrics (prometheus-client, prefix ``ovs_``) and the dashboard's delivery
figures. One registry per app (tests build many apps). Counters move from the job store's
observer hook (every status change and wait reason) and from /download; gauges are read at
scrape time from the store, the placer and the load monitor by ``web/ops/metrics.py``.

Labels never carry a job id, a file name or a user name: only outcome, encoder, profile,
device, reason class, and with worker hosts (QUEUE_URL) the node a job ran on: a worker
host's name, ``local`` for this server, ``none`` for a job that never ran. Without worker
hosts there is no ``node`` label at all (a single host's series stay as they were).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..jobs.models import Job, JobStatus

# 10 s to 4 h: a short clip on a GPU up to a long film on a small CPU
BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))
# VMAF of finished outputs: fine steps where phone copies land (media/quality.py)
VMAF_BUCKETS = (40, 60, 70, 80, 85, 88, 90, 92, 94, 96, 98, 100)
OUTCOMES = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
DELIVERIES = 4096  # jobs whose delivery and run figures are remembered (the oldest go first)
ENDED = frozenset({*OUTCOMES, JobStatus.READY_FOR_REMOVAL})
_V = TypeVar("_V")


@dataclass(slots=True)
class Delivery:
    bytes: int = 0
    requests: int = 0
    resumes: int = 0  # ranged requests that did not start at the first byte


@dataclass(slots=True)
class Run:
    """A job's last run as its progress reports told it."""

    frames: int = 0  # video frames written
    speed: float | None = None  # ffmpeg's last figure (x real time, over the run so far)


class Telemetry:
    """Implements jobs.models.StoreObserver."""

    def __init__(self, nodes: bool = False) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._nodes = nodes
        by_node = ["node"] if nodes else []
        self.finished = Counter(
            "ovs_jobs_finished",
            "jobs that ended, by outcome, encoder and profile",
            ["outcome", "encoder", "profile", *by_node],
            registry=r,
        )
        self.duration = Histogram(
            "ovs_job_duration_seconds",
            "time from a job's start to its end",
            ["outcome", *by_node],
            buckets=BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "ovs_queue_wait_seconds",
            "time a job waited in the queue before it started",
            buckets=BUCKETS,
            registry=r,
        )
        self.output_bytes = Counter(
            "ovs_output_bytes", "bytes of finished outputs written", by_node, registry=r
        )
        self.frames = Counter(
            "ovs_transcoded_frames",
            "video frames written by ffmpeg (their rate is fps)",
            by_node,
            registry=r,
        )
        self.vmaf = Histogram(
            "ovs_output_vmaf",
            "measured VMAF (mean over the sampled windows) of finished encodes",
            ["profile", "encoder"],
            buckets=VMAF_BUCKETS,
            registry=r,
        )
        self.download_bytes = Counter("ovs_download_bytes", "bytes sent by /download", registry=r)
        self.holds = Counter(
            "ovs_scheduler_holds", "times a waiting job was held, by reason", ["reason"], registry=r
        )
        self._last_hold: dict[str, str] = {}
        self.deliveries: OrderedDict[str, Delivery] = OrderedDict()
        self.runs: OrderedDict[str, Run] = OrderedDict()  # each job's last run

    # -- jobs.models.StoreObserver ----------------------------------------------------

    def changed(self, job: Job, previous: JobStatus) -> None:
        if job.status is JobStatus.OPTIMIZING:
            self._last_hold.pop(job.id, None)
            if job.started_at is not None:
                self.queue_wait.observe(max(0.0, job.started_at - job.created_at))
            _keep(self.runs, job.id, Run())  # a new run counts its own frames
            return
        outcome = OUTCOMES.get(job.status)
        if outcome is None:
            return  # queued again, pending downloads, collected: not an end
        if outcome == "completed" and previous is not JobStatus.OPTIMIZING:
            return  # a collected job brought back by a repeated request: counted already
        self._last_hold.pop(job.id, None)
        ran = outcome == "completed" or previous is JobStatus.OPTIMIZING
        encoder = (job.encoder or job.backend or "none") if ran else "none"
        node = self._node(job, ran)
        self.finished.labels(outcome, encoder, job.profile, *node).inc()
        if job.started_at is not None and job.finished_at is not None:
            seconds = max(0.0, job.finished_at - job.started_at)
            self.duration.labels(outcome, *node).observe(seconds)
        if outcome == "completed":
            self._by_node(self.output_bytes, job).inc(job.size)
            mean = (job.quality or {}).get("mean")
            if isinstance(mean, int | float):  # a copy, or an unmeasured output: none
                self.vmaf.labels(job.profile, encoder).observe(mean)

    def waited(self, job: Job, label: str) -> None:
        # counted once per hold, not on every scheduler pass that finds it still held
        kind = label
        if self._last_hold.get(job.id) != kind:
            self._last_hold[job.id] = kind
            self.holds.labels(kind).inc()

    def progressed(self, job: Job, frames: int) -> None:
        if frames > 0:
            self._by_node(self.frames, job).inc(frames)
        if frames > 0 or job.speed is not None:
            run = self.runs.get(job.id) or Run()
            run.frames += max(frames, 0)
            run.speed = job.speed if job.speed is not None else run.speed
            _keep(self.runs, job.id, run)

    def _node(self, job: Job, ran: bool = True) -> list[str]:
        """The ``node`` label's value, as a list to splat (empty on a single host); "none"
        for a job cancelled or failed before it ran."""
        if not self._nodes:
            return []
        return [(job.node or "local") if ran else "none"]

    def _by_node(self, counter: Counter, job: Job) -> Counter:
        return counter.labels(*self._node(job)) if self._nodes else counter

    def fps(self, job: Job, now: float) -> float | None:
        """Frames per second of the job's last run (in memory: unknown after a restart)."""
        run = self.runs.get(job.id)
        if run is None or not run.frames or job.started_at is None:
            return None
        seconds = (job.finished_at or now) - job.started_at
        return run.frames / seconds if seconds > 0 else None

    def speed(self, job: Job) -> float | None:
        """The job's speed (x real time): the record's while it runs; once it ended (the
        record forgets it then), its run's last figure (in memory: unknown after a restart)."""
        if job.speed is not None or job.status not in ENDED:
            return job.speed
        run = self.runs.get(job.id)
        return None if run is None else run.speed

    # -- /download -------------------------------------------------------------------

    def served(self, job_id: str, size: int, resumed: bool) -> None:
        self.download_bytes.inc(size)
        delivery = self.deliveries.get(job_id) or Delivery()
        delivery.bytes += size
        delivery.requests += 1
        delivery.resumes += int(resumed)
        _keep(self.deliveries, job_id, delivery)


def _keep(table: OrderedDict[str, _V], key: str, value: _V) -> None:
    """``value`` as the newest entry of ``table``, which keeps DELIVERIES at most."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > DELIVERIES:
        table.popitem(last=False)
