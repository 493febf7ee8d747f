"""The scheduler: which waiting job runs next, where (through placement), and what becomes
of it when its run ends.

It owns every job task (no fire-and-forget tasks elsewhere) and every slot: a job holds a
lease on one device's slot from launch to end, and a step down the ladder to another device
goes through placement like a launch does. Running jobs go back to the queue when the
server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..catalog.device import Device
from ..config import Config
from ..errors import BadRequest, MustWait, RetryLater, TranscodeError
from ..logs import Every
from .models import RUN_RESET, WAITING, Job, JobStatus
from .placement import Placed, Placement, Placer, SlotLease, Wait
from .queue import FairQueue
from .remote import Remote
from .runner import Runner
from .store import JobStore

log = logging.getLogger(__name__)

RETRY_BASE, RETRY_MAX = 30.0, 600.0  # back-off of a job requeued because the encoder was full


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        runner: Runner,
        config: Config,
        clock: Callable[[], float],
        placer: Placer,
    ) -> None:
        self._store = store
        self._runner = runner
        self._config = config
        self._clock = clock
        self._placer = placer
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, SlotLease] = {}  # job id -> the slot it holds
        self._stop_as: dict[str, JobStatus] = {}  # how an interrupted job ends
        self._queue = FairQueue(store, config)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._storage_log = Every(60.0)
        self.remote: Remote | None = None  # worker hosts, when QUEUE_URL is set
        self._waiting: tuple[int, list[Job]] = (-1, [])  # the store's version -> waiting jobs

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")
        self.wake()

    async def close(self) -> None:
        """Stop taking work and put running jobs back in the queue for the next start."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self._interrupt(list(self._running), JobStatus.QUEUED)

    def wake(self) -> None:
        self._wake.set()

    # -- requests from the API ---------------------------------------------------------

    def start_now(self, job: Job) -> None:
        """start-job: first in the queue; it starts as soon as a device its profile allows
        has a free slot, never beside a full device or past MAX_CONCURRENT_JOBS."""
        if job.status not in WAITING:
            raise BadRequest(f"job {job.id} is {job.status}: only a queued job can be started")
        self._store.promote(job)
        self.wake()

    async def cancel(self, job: Job) -> None:
        if job.status in WAITING:
            self._store.transition(job, JobStatus.CANCELLED, finished_at=self._clock())
        elif job.status is JobStatus.OPTIMIZING and job.node is not None and self.remote:
            self._store.transition(job, JobStatus.CANCELLED, speed=None, finished_at=self._clock())
            await self.remote.cancel(job)  # its worker host stops ffmpeg (q, then kill)
        elif job.status is JobStatus.OPTIMIZING:
            await self._interrupt([job.id], JobStatus.CANCELLED)
        elif job.status is JobStatus.COMPLETED:
            self._store.transition(job, JobStatus.READY_FOR_REMOVAL, collected_at=self._clock())
        elif job.status is JobStatus.FAILED:
            self._store.dismiss(job)
        self.wake()

    async def cancel_all(self) -> None:
        for job in self._store.jobs(statuses=WAITING):
            self._store.transition(job, JobStatus.CANCELLED, finished_at=self._clock())
        await self._interrupt(list(self._running), JobStatus.CANCELLED)

    # -- the queue ---------------------------------------------------------------------

    async def _loop(self) -> None:
        next_due: float | None = None
        while True:
            timeout = None if next_due is None else max(0.0, next_due - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                next_due = self._fill_slots()
            except sqlite3.Error as exc:  # a full or read-only data folder: retry, log rarely
                if self._storage_log.due():
                    log.error("scheduler pass failed: the job store: %s", exc)
                next_due = self._clock() + 5.0
            except Exception:  # a bug here must not stop the queue for good
                log.exception("scheduler pass failed")

    def _fill_slots(self) -> float | None:
        """Start what may start; returns when a job held back by a back-off is due."""
        now = self._clock()
        if self._waiting[0] != self._store.version:  # a pass that wrote nothing (a new load
            self._waiting = (self._store.version, self._store.waiting())  # reading) reads none
        waiting = self._waiting[1]
        later = [j.not_before for j in waiting if j.not_before is not None and j.not_before > now]
        due = [j for j in waiting if j.not_before is None or j.not_before <= now]
        eligible, room = self._queue.apply_cache_limit(due, self._wait)
        eligible = self._queue.in_order(eligible)  # again after each launch only: O(n log n)
        free = self._config.max_concurrent_jobs - len(self._running)
        if not self._config.local_jobs:
            free = 0
        while eligible:
            job = eligible.pop(0)
            profile = self._runner.profiles[job.profile]
            where: Placement
            if free <= 0:
                where = Wait(self._no_slot())
            elif not self._placer.candidates(profile):  # no device here ever will
                if self.remote is None:
                    error = self._placer.hardware.none_works(profile)
                    self._store.transition(
                        job, JobStatus.FAILED, finished_at=self._clock(), error=error
                    )
                    continue
                where = Wait(self._placer.hardware.none_works(profile))
            else:
                where = self._placer.place(profile, only=job.pinned_device)
            here = where.device if isinstance(where, Placed) else None
            node = None
            if self.remote is not None and job.pinned_device is None:
                node = self.remote.choose(profile, here)
            if node is not None:
                self._send(job, node)
            elif here is not None:
                self._launch(job, here)
                free -= 1
            else:
                assert isinstance(where, Wait)
                reason = where.reason
                remote = self.remote if job.pinned_device is None else None
                if remote is not None and (nodes := remote.why_not(profile)):  # e.g. drains
                    reason = f"{reason}; {nodes}"
                self._wait(job, reason)
                continue
            room[job.device_id] -= 1
            if room[job.device_id] <= 0:  # its output will count against the limit too
                eligible = [j for j in eligible if j.device_id != job.device_id]
            eligible = self._queue.in_order(eligible)  # its user and device had their turn
        return min(later, default=None)

    def _no_slot(self) -> str:
        if not self._config.local_jobs:
            return "waits for a worker host (this server runs no jobs itself: LOCAL_JOBS)"
        return f"all {self._config.max_concurrent_jobs} job slots are in use"

    def _wait(self, job: Job, reason: str) -> None:
        if job.pinned_device is not None:
            reason = f"fell back to {job.pinned_device}: {reason}"
        if job.wait_reason != reason:
            self._store.note_wait(job, reason)

    # -- running one job ---------------------------------------------------------------

    def _launch(self, waiting: Job, device: Device) -> None:
        job = self._started(waiting)
        self._placer.claim(device.id)
        lease = self._leases[job.id] = SlotLease(self._placer, device.id)
        log.info("job %s placed on %s", job.id, device.id)
        self._running[job.id] = asyncio.create_task(self._run(job, lease), name=f"job-{job.id}")

    def _started(self, waiting: Job, node: str | None = None) -> Job:
        """The job (with its item, for the runner) moved to optimizing, here or on ``node``."""
        job = self._store.get(waiting.id) or waiting
        self._queue.served(job)
        return self._store.transition(
            job,
            JobStatus.OPTIMIZING,
            **{**RUN_RESET, "started_at": self._clock(), "node": node},
            error=None,
            not_before=None,
            wait_reason=None,
            fallbacks=job.fallbacks if job.pinned_device else [],
        )

    def _send(self, waiting: Job, node: str) -> None:
        """To a worker host: the job is its node's now (its heartbeats keep it there)."""
        assert self.remote is not None
        job = self._started(waiting, node)
        log.info("job %s sent to worker host %s", job.id, node)
        self.remote.send(job, node)

    async def _run(self, job: Job, lease: SlotLease) -> None:
        frames_seen = 0  # this ffmpeg run's frames so far (a new rung starts again at 0)

        def on_progress(percent: float, speed: float | None, size: int, frames: int) -> None:
            nonlocal frames_seen
            job.progress = max(job.progress, percent)  # monotonic, whatever ffmpeg reports
            job.speed, job.size = speed, size
            new_frames = frames - frames_seen if frames >= frames_seen else frames
            frames_seen = frames
            self._store.save_progress(job, new_frames)

        def on_plan(why: str) -> None:  # each rung's plan, shown while it runs
            job.plan = why
            self._store.save_progress(job)

        try:
            source = self._store.source_url(job.id)
            if source is None:
                raise TranscodeError("the job's source URL was lost")
            output = Path(job.output_path)
            outcome = await self._runner.run(job, source, output, on_progress, lease, on_plan)
        except asyncio.CancelledError:
            self._end_interrupted(job, self._stop_as.pop(job.id, JobStatus.QUEUED))
            raise
        except RetryLater as exc:
            if exc.device is not None:
                self._placer.shrink(exc.device)
            delay = min(RETRY_BASE * 2**job.retries, RETRY_MAX)
            self._store.transition(
                job,
                JobStatus.QUEUED,
                **RUN_RESET,
                retries=job.retries + 1,
                not_before=self._clock() + delay,
                wait_reason=f"{exc.reason} (in {delay:g} s)",
            )
        except MustWait as exc:
            self._store.transition(
                job,
                JobStatus.QUEUED,
                **RUN_RESET,
                pinned_device=exc.device,
                fallbacks=[*job.fallbacks, *exc.fallbacks],
                wait_reason=f"fell back to {exc.device}: {exc.reason}",
            )
        except TranscodeError as exc:
            self._fail(job, str(exc))
        except Exception as exc:
            log.exception("job %s: unexpected error", job.id)
            self._fail(job, f"internal error: {type(exc).__name__}")
        else:
            self._store.transition(
                job, JobStatus.COMPLETED, **outcome.completed(job, self._clock())
            )
        finally:
            self._running.pop(job.id, None)
            self._release(job.id)
            self.wake()

    def _fail(self, job: Job, error: str) -> None:
        self._store.transition(
            job, JobStatus.FAILED, error=error, speed=None, finished_at=self._clock()
        )

    def _release(self, job_id: str) -> None:
        lease = self._leases.pop(job_id, None)
        if lease is not None:
            lease.release()

    def _end_interrupted(self, job: Job, end_as: JobStatus) -> None:
        if end_as is JobStatus.CANCELLED:
            self._store.transition(job, JobStatus.CANCELLED, speed=None, finished_at=self._clock())
        else:
            self._store.transition(job, JobStatus.QUEUED, **RUN_RESET)

    async def _interrupt(self, job_ids: list[str], end_as: JobStatus) -> None:
        tasks = []
        for job_id in job_ids:
            task = self._running.get(job_id)
            if task is not None:
                if self._stop_as.get(job_id) is not JobStatus.CANCELLED:  # a cancel wins
                    self._stop_as[job_id] = end_as
                task.cancel()
                tasks.append(task)
        if tasks:
            await asyncio.wait(tasks)
        for job_id in job_ids:
            unhandled = self._stop_as.pop(job_id, None)
            if unhandled is None:
                continue  # the job's own handler ended it
            # Either the task was cancelled before its first step (its handler never ran),
            # or it finished just as the cancel came (the cancel was lost): only the first
            # leaves the job optimizing.
            job = self._store.get(job_id)
            if job is not None and job.status is JobStatus.OPTIMIZING:
                self._running.pop(job_id, None)
                self._release(job_id)
                self._end_interrupted(job, unhandled)
