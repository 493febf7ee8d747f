"""The one owner of a job's life: every change of a job's status or of its run fields is
made here (submit, start now, hold, start, progress, finish, cancel, collect, dismiss,
remove) or in ``jobs/shared.py`` (``self.shared``: records sharing one output followed,
copied, handed over, settled), and nowhere else (``tests/test_lifecycle.py`` proves it).

Executors (``jobs.local`` here, ``nodes.dispatch`` for worker hosts) run jobs and report
to it: ``started``, ``progress``, ``finished`` with an ``End``. The scheduler only orders
and places. A finish that cannot be applied (a full data folder, a malformed report)
never strands a job: what it produced becomes the job's only once the store has accepted
the change, and a job left ``optimizing`` that no executor holds is queued again by
``recover`` (at start-up and on the scheduler's sweeps).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import BadRequest
from ..waits import Hold
from .models import ACTIVE, RUN_RESET, WAITING, Job, JobStatus
from .outcome import Outcome
from .shared import SharedOutputs
from .store import InvalidTransition, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Completed:
    outcome: Outcome
    produced: Path | None = None  # a file to move onto the job's output once accepted


@dataclass(frozen=True, slots=True)
class Failed:
    error: str


@dataclass(frozen=True, slots=True)
class Requeued:
    """Back to the queue: ``delay`` seconds of back-off (the encoder was full), or pinned
    to the device the ladder fell back to."""

    reason: str | Hold | None  # the job's wait reason until it runs again
    delay: float | None = None
    pinned: str | None = None
    fallbacks: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Cancelled:
    pass


End = Completed | Failed | Requeued | Cancelled


class Executor(Protocol):
    """Runs jobs (here, or on worker hosts) and reports to the lifecycle."""

    def holds(self, job: Job) -> bool:
        """Whether this executor is running ``job`` now."""
        ...

    async def stop(self, job: Job) -> None:
        """Stop ``job`` (it reports ``Cancelled`` or nothing more)."""
        ...


class Lifecycle:
    def __init__(self, store: JobStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._executors: list[Executor] = []
        self._listeners: list[Callable[[], None]] = []
        self.stranded = False  # a finish failed to apply: recover at the next pass
        self.shared = SharedOutputs(store, clock, self.nudge)  # follow, copy, pass_on, settle

    def attach(self, executor: Executor) -> None:
        self._executors.append(executor)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """``listener`` is called after each change that may let another job start."""
        self._listeners.append(listener)

    def nudge(self) -> None:
        """Tell the listeners (the scheduler) that a waiting job may start now."""
        for listener in self._listeners:
            listener()

    # -- requests --------------------------------------------------------------------

    def submit(self, job: Job, source_url: str) -> None:
        self._store.add(job, source_url)
        self.nudge()

    def reuse(self, job: Job) -> None:
        """A retried request brings back a collected output still on disk."""
        self._store.transition(job, JobStatus.COMPLETED, collected_at=None)

    def start_now(self, job: Job) -> None:
        """start-job: first in the queue."""
        if job.status not in WAITING:
            raise BadRequest(f"job {job.id} is {job.status}: only a queued job can be started")
        self._store.promote(job)
        if job.maker_id is not None:  # it waits on that run: that run goes first
            maker = self._store.get(job.maker_id)
            if maker is not None and maker.status in WAITING:
                self._store.promote(maker)
        self.nudge()

    async def cancel(self, job: Job) -> None:
        """cancel-job: cancel a waiting or running job, collect a completed one, dismiss
        a failed one."""
        if job.status in WAITING:
            self._store.transition(job, JobStatus.CANCELLED, finished_at=self._clock())
        elif job.status is JobStatus.OPTIMIZING:
            holder = next((e for e in self._executors if e.holds(job)), None)
            if holder is None or job.node is not None:  # a worker host's: cancelled now
                self._store.transition(
                    job, JobStatus.CANCELLED, speed=None, finished_at=self._clock()
                )
            if holder is not None:
                await holder.stop(job)
        elif job.status is JobStatus.COMPLETED:
            self.collect(job)
        elif job.status is JobStatus.FAILED:
            self._store.dismiss(job)
        self.shared.settle(job.id)  # a maker cancelled: another record takes its place
        self.nudge()

    async def cancel_all(self) -> None:
        """Every waiting and running job: those waiting on another's run first (no record
        takes over a run that is cancelled too)."""
        for job in [*self._store.followers(), *self._store.jobs(statuses=ACTIVE)]:
            current = self._store.get(job.id)
            if current is not None and current.status in ACTIVE:
                with contextlib.suppress(InvalidTransition):  # ended meanwhile
                    await self.cancel(current)

    def collect(self, job: Job) -> None:
        """The client has the file: it stays a grace period, then retention removes it."""
        self._store.transition(job, JobStatus.READY_FOR_REMOVAL, collected_at=self._clock())

    def remove(self, job_id: str) -> None:
        """Retention: the record goes (its file went first)."""
        self._store.delete(job_id)
        self.shared.settle(job_id)
        self.nudge()

    # -- the scheduler's ---------------------------------------------------------------

    def wait(self, job: Job, hold: Hold) -> None:
        """Why a waiting job waits (shown in job-status, counted by its label)."""
        if job.pinned_device is not None:
            hold = hold.fell_back(job.pinned_device)
        if job.wait_reason != (words := str(hold)):
            self._store.note_wait(job, words, hold.label)

    def hold(self, job: Job, reason: Hold) -> None:
        """The device's uncollected outputs reached MAX_CACHED_PER_USER."""
        if job.status is JobStatus.QUEUED:
            self._store.transition(job, JobStatus.PENDING_DOWNLOADS)
        self.wait(job, reason)

    def unhold(self, job: Job) -> None:
        if job.status is JobStatus.PENDING_DOWNLOADS:
            self._store.transition(job, JobStatus.QUEUED)

    def refuse(self, job: Job, error: str) -> None:
        """A waiting job no device here will ever run."""
        self._store.transition(job, JobStatus.FAILED, finished_at=self._clock(), error=error)
        self.shared.settle(job.id)

    # -- the executors' ---------------------------------------------------------------

    def started(self, waiting: Job, node: str | None = None) -> Job:
        """The job (with its item, for the runner) is optimizing, here or on ``node``."""
        job = self._store.get(waiting.id) or waiting
        return self._store.transition(
            job,
            JobStatus.OPTIMIZING,
            **{**RUN_RESET, "started_at": self._clock(), "node": node},
            error=None,
            not_before=None,
            wait_reason=None,
            fallbacks=job.fallbacks if job.pinned_device else [],
        )

    def progress(
        self,
        job: Job,
        percent: float,
        speed: float | None,
        size: int,
        frames: int,
        plan: str | None = None,
    ) -> None:
        """Best effort (a full data folder must not stop a transcode); ``frames``: video
        frames written since the last report."""
        job.progress = max(job.progress, percent)  # monotonic, whatever ffmpeg reports
        job.speed, job.size = speed, size
        if plan is not None:
            job.plan = plan
        self._store.save_progress(job, frames)

    def planned(self, job: Job, why: str) -> None:
        """Each rung's plan, shown while it runs."""
        job.plan = why
        self._store.save_progress(job)

    def finished(self, job: Job, end: End) -> bool:
        """Apply how a run ended; False when it was not applied (cancelled meanwhile, or
        the store refused: then the job is recovered by the next sweep)."""
        try:
            self._finish(job, end)
        except InvalidTransition:  # cancelled or requeued meanwhile: nothing is the job's
            self._discard(job, end)
            self.stranded |= not self.shared.settle_quietly(job.id)
            return False
        except Exception:
            log.exception("job %s: its end (%s) could not be applied", job.id, type(end).__name__)
            self._discard(job, end)
            self.stranded = True
            self.nudge()
            return False
        self.stranded |= not self.shared.settle_quietly(job.id)  # records waiting on it
        self.nudge()
        return True

    def _finish(self, job: Job, end: End) -> None:
        now = self._clock()
        if isinstance(end, Completed):
            changes = end.outcome.completed(job, now)
            self._store.transition(job, JobStatus.COMPLETED, **changes)
            if end.produced is not None:  # accepted: only now is it the job's output
                try:
                    os.replace(end.produced, job.output_path)
                except OSError as exc:  # the record is true again at the next start
                    log.error("job %s: its output could not be moved in: %s", job.id, exc)
        elif isinstance(end, Failed):
            self._store.transition(
                job, JobStatus.FAILED, error=end.error, speed=None, finished_at=now
            )
        elif isinstance(end, Requeued):
            self._requeue(job, end, now)
        else:
            self._store.transition(job, JobStatus.CANCELLED, speed=None, finished_at=now)

    def _requeue(self, job: Job, end: Requeued, now: float) -> None:
        reason = None if end.reason is None else str(end.reason)
        changes: dict[str, Any] = {**RUN_RESET, "wait_reason": reason}
        if end.delay is not None:
            changes.update(retries=job.retries + 1, not_before=now + end.delay)
        if end.pinned is not None:
            changes.update(pinned_device=end.pinned, fallbacks=[*job.fallbacks, *end.fallbacks])
        self._store.transition(job, JobStatus.QUEUED, **changes)

    @staticmethod
    def _discard(job: Job, end: End) -> None:
        """A completion not applied: what it produced is no job's output (a worker's file
        on its way in, or the output the local runner wrote in place)."""
        if isinstance(end, Completed):
            with contextlib.suppress(OSError):
                (end.produced or Path(job.output_path)).unlink()

    # -- recovery ----------------------------------------------------------------------

    def recover(self, keep_remote: bool = False) -> list[Job]:
        """Jobs left optimizing that no executor holds go back to the queue (after a
        crash, or a finish that could not be applied). ``keep_remote``: at start-up, a
        worker host's jobs stay its own until it is lost (it may still be running them)."""
        stranded = []
        for job in self._store.jobs(statuses=[JobStatus.OPTIMIZING]):
            if keep_remote and job.node is not None:
                continue
            if not any(e.holds(job) for e in self._executors):
                stranded.append(job)
        for job in stranded:
            log.warning("job %s: optimizing on no executor: queued again", job.id)
            with contextlib.suppress(InvalidTransition):
                self._store.transition(job, JobStatus.QUEUED, **RUN_RESET)
        self.stranded = False
        self.shared.settle_all()  # makers a restart (or a lost event) left behind
        if stranded:
            self.nudge()
        return stranded
