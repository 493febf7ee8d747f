"""The scheduler: runs queued jobs in a bounded number of slots, fairly across devices.

It owns every job task (no fire-and-forget tasks elsewhere), decides which waiting
job runs next, and puts running jobs back in the queue when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from .config import Config
from .devices import Device
from .errors import BadRequest, RetryLater, TranscodeError
from .models import WAITING, Job, JobStatus
from .placement import Placement
from .store import JobStore
from .transcode import Transcoder

log = logging.getLogger(__name__)

RETRY_BASE, RETRY_MAX = 30.0, 600.0  # back-off of a job requeued because the encoder was full


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        transcoder: Transcoder,
        config: Config,
        clock: Callable[[], float],
        placement: Placement,
    ) -> None:
        self._store = store
        self._transcoder = transcoder
        self._config = config
        self._clock = clock
        self._placement = placement
        self._running: dict[str, asyncio.Task[None]] = {}
        self._placed: dict[str, str] = {}  # job id -> the device it holds a slot on
        self._stop_as: dict[str, JobStatus] = {}  # how an interrupted job ends
        self._user_turn: dict[str, int] = {}  # user id -> turn it was last served
        self._device_turn: dict[str, int] = {}  # client device id -> turn it was last served
        self._turn = 0
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

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
        """Run a waiting job at once, ahead of the queue and beside the running ones: on a
        free device if there is one, else on the best device for its profile."""
        if job.status not in WAITING:
            raise BadRequest(f"job {job.id} is {job.status}: only a queued job can be started")
        profile = self._transcoder.profiles[job.profile]
        where = self._placement.place(profile)
        if isinstance(where, str):
            candidates = self._placement.candidates(profile)
            if not candidates:
                raise BadRequest(f"job {job.id} cannot start: {where}")
            where = candidates[0]
        self._launch(job, where)

    async def cancel(self, job: Job) -> None:
        if job.status in WAITING:
            self._store.transition(job, JobStatus.CANCELLED, finished_at=self._clock())
        elif job.status is JobStatus.OPTIMIZING:
            await self._interrupt([job.id], JobStatus.CANCELLED)
        elif job.status is JobStatus.COMPLETED:
            self._store.transition(job, JobStatus.READY_FOR_REMOVAL, collected_at=self._clock())
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
            except Exception:  # a bug here must not stop the queue for good
                log.exception("scheduler pass failed")

    def _fill_slots(self) -> float | None:
        """Start what may start; returns when a job held back by a back-off is due."""
        now = self._clock()
        waiting = self._store.jobs(statuses=WAITING, oldest_first=True)
        later = [j.not_before for j in waiting if j.not_before is not None and j.not_before > now]
        due = [j for j in waiting if j.not_before is None or j.not_before <= now]
        eligible, room = self._apply_cache_limit(due)
        free = self._config.max_concurrent_jobs - len(self._running)
        while eligible:
            job = self._next_fair(eligible)
            eligible.remove(job)
            if free <= 0:
                self._wait(job, f"all {self._config.max_concurrent_jobs} job slots are in use")
                continue
            profile = self._transcoder.profiles[job.profile]
            if not self._placement.candidates(profile):  # no device ever will: say so now
                self._store.transition(
                    job,
                    JobStatus.FAILED,
                    finished_at=self._clock(),
                    error=self._placement.hardware.none_works(profile),
                )
                continue
            where = self._placement.place(profile)
            if isinstance(where, str):
                self._wait(job, where)
                continue
            self._launch(job, where)
            free -= 1
            room[job.device_id] -= 1
            if room[job.device_id] <= 0:  # its output will count against the limit too
                eligible = [j for j in eligible if j.device_id != job.device_id]
        return min(later, default=None)

    def _wait(self, job: Job, reason: str) -> None:
        if job.wait_reason != reason:
            self._store.note_wait(job, reason)

    def _apply_cache_limit(self, waiting: list[Job]) -> tuple[list[Job], dict[str, float]]:
        """MAX_CACHED_PER_USER: a device whose uncollected (and running) jobs reach the
        limit waits. Returns the jobs that may start and the room left per device."""
        limit = self._config.max_cached_per_user or float("inf")
        room: dict[str, float] = {}
        eligible = []
        for job in waiting:
            if job.device_id not in room:
                done = self._store.count(JobStatus.COMPLETED, job.device_id)
                running = self._store.count(JobStatus.OPTIMIZING, job.device_id)
                room[job.device_id] = limit - done - running
            if room[job.device_id] <= 0:
                if job.status is JobStatus.QUEUED:
                    self._store.transition(job, JobStatus.PENDING_DOWNLOADS)
                self._wait(
                    job,
                    f"device {job.device_id} has {self._config.max_cached_per_user}"
                    " output(s) not collected yet (MAX_CACHED_PER_USER)",
                )
            else:
                if job.status is JobStatus.PENDING_DOWNLOADS:
                    self._store.transition(job, JobStatus.QUEUED)
                eligible.append(job)
        return eligible, room

    def _next_fair(self, eligible: list[Job]) -> Job:
        """Round-robin across users, then across a user's devices, FIFO within a device:
        the user served longest ago goes first, so a season queued by one user does not
        hold back another user's film by more than one job."""
        return min(
            eligible,
            key=lambda j: (
                self._user_turn.get(j.owner_id, -1),
                self._device_turn.get(j.device_id, -1),
                j.created_at,
            ),
        )

    # -- running one job ---------------------------------------------------------------

    def _launch(self, job: Job, device: Device) -> None:
        self._turn += 1
        self._user_turn[job.owner_id] = self._device_turn[job.device_id] = self._turn
        self._store.transition(
            job,
            JobStatus.OPTIMIZING,
            started_at=self._clock(),
            progress=0.0,
            speed=None,
            size=0,
            error=None,
            not_before=None,
            wait_reason=None,
        )
        self._placement.claim(device.id)
        self._placed[job.id] = device.id
        log.info("job %s placed on %s", job.id, device.id)
        self._running[job.id] = asyncio.create_task(self._run(job, device.id), name=f"job-{job.id}")

    async def _run(self, job: Job, device: str) -> None:
        def on_progress(percent: float, speed: float | None, size: int) -> None:
            job.progress = max(job.progress, percent)  # monotonic, whatever ffmpeg reports
            job.speed, job.size = speed, size
            self._store.save_progress(job)

        try:
            source = self._store.source_url(job.id)
            if source is None:
                raise TranscodeError("the job's source URL was lost")
            outcome = await self._transcoder.run(
                job, source, Path(job.output_path), on_progress, device
            )
        except asyncio.CancelledError:
            self._end_interrupted(job, self._stop_as.pop(job.id, JobStatus.QUEUED))
            raise
        except RetryLater as exc:
            if exc.device is not None:
                self._placement.shrink(exc.device)
            delay = min(RETRY_BASE * 2**job.retries, RETRY_MAX)
            self._store.transition(
                job,
                JobStatus.QUEUED,
                progress=0.0,
                speed=None,
                size=0,
                started_at=None,
                retries=job.retries + 1,
                not_before=self._clock() + delay,
                wait_reason=f"{exc.reason} (in {delay:g} s)",
            )
        except TranscodeError as exc:
            self._store.transition(
                job, JobStatus.FAILED, error=str(exc), speed=None, finished_at=self._clock()
            )
        except Exception as exc:
            log.exception("job %s: unexpected error", job.id)
            self._store.transition(
                job,
                JobStatus.FAILED,
                error=f"internal error: {type(exc).__name__}",
                speed=None,
                finished_at=self._clock(),
            )
        else:
            self._store.transition(
                job,
                JobStatus.COMPLETED,
                progress=100.0,
                speed=None,
                size=outcome.size,
                checksum=outcome.checksum,
                backend=outcome.backend,
                encoder=outcome.encoder,
                decoder=outcome.decoder,
                fallbacks=outcome.fallbacks,
                finished_at=self._clock(),
            )
        finally:
            self._running.pop(job.id, None)
            self._release(job.id)
            self.wake()

    def _release(self, job_id: str) -> None:
        device = self._placed.pop(job_id, None)
        if device is not None:
            self._placement.release(device)

    def _end_interrupted(self, job: Job, end_as: JobStatus) -> None:
        if end_as is JobStatus.CANCELLED:
            self._store.transition(job, JobStatus.CANCELLED, speed=None, finished_at=self._clock())
        else:
            self._store.transition(
                job, JobStatus.QUEUED, progress=0.0, speed=None, size=0, started_at=None
            )

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
