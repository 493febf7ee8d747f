"""The local executor: runs jobs on this server's devices, each as a task that holds a
slot lease from placement, and reports what happens to the lifecycle.

It owns every local job task (no fire-and-forget tasks elsewhere). Running jobs go back
to the queue when the server stops.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..catalog.device import Device
from ..errors import MustWait, RetryLater, TranscodeError
from ..waits import Hold, Why
from .lifecycle import Cancelled, Completed, End, Failed, Lifecycle, Requeued
from .models import Job, JobStatus
from .placement import Placer, SlotLease
from .runner import Runner
from .store import JobStore

log = logging.getLogger(__name__)

RETRY_BASE, RETRY_MAX = 30.0, 600.0  # back-off of a job requeued because the encoder was full


class LocalRuns:
    def __init__(
        self, store: JobStore, lifecycle: Lifecycle, runner: Runner, placer: Placer
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._runner = runner
        self._placer = placer
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, SlotLease] = {}  # job id -> the slot it holds
        self._stop_as: dict[str, End] = {}  # how an interrupted job ends

    @property
    def running(self) -> int:
        return len(self._running)

    def holds(self, job: Job) -> bool:
        return job.node is None and job.id in self._running

    def launch(self, waiting: Job, device: Device) -> None:
        job = self._lifecycle.started(waiting)
        lease = self._leases[job.id] = SlotLease.claim(self._placer, device.id)
        log.info("job %s placed on %s", job.id, device.id)
        self._running[job.id] = asyncio.create_task(self._run(job, lease), name=f"job-{job.id}")

    async def stop(self, job: Job) -> None:
        await self._interrupt([job.id], Cancelled())

    async def close(self) -> None:
        """The server stops: running jobs go back to the queue for the next start."""
        await self._interrupt(list(self._running), Requeued(None))

    async def _run(self, job: Job, lease: SlotLease) -> None:
        def on_progress(percent: float, speed: float | None, size: int, frames: int) -> None:
            self._lifecycle.progress(job, percent, speed, size, frames)

        def on_plan(why: str) -> None:
            self._lifecycle.planned(job, why)

        end: End
        try:
            source = self._store.source_url(job.id)
            if source is None:
                raise TranscodeError("the job's source URL was lost")
            output = Path(job.output_path)
            outcome = await self._runner.run(job, source, output, on_progress, lease, on_plan)
            end = Completed(outcome)
        except asyncio.CancelledError:
            self._lifecycle.finished(job, self._ended_as(job.id))
            raise
        except RetryLater as exc:
            if exc.device is not None:
                self._placer.shrink(exc.device)
            delay = min(RETRY_BASE * 2**job.retries, RETRY_MAX)
            end = Requeued(Hold.of(Why.SESSION_CAP, meaning=exc.reason, delay=delay), delay=delay)
        except MustWait as exc:
            why = exc.reason.fell_back(exc.device)
            end = Requeued(why, pinned=exc.device, fallbacks=exc.fallbacks)
        except TranscodeError as exc:
            end = Failed(str(exc))
        except Exception as exc:
            log.exception("job %s: unexpected error", job.id)
            end = Failed(f"internal error: {type(exc).__name__}")
        finally:
            self._forget(job.id)
        self._lifecycle.finished(job, end)

    def _ended_as(self, job_id: str) -> End:
        return self._stop_as.pop(job_id, None) or Requeued(None)

    def _forget(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        if (lease := self._leases.pop(job_id, None)) is not None:
            lease.release()

    async def _interrupt(self, job_ids: list[str], end: End) -> None:
        tasks = []
        for job_id in job_ids:
            task = self._running.get(job_id)
            if task is not None:
                if not isinstance(self._stop_as.get(job_id), Cancelled):  # a cancel wins
                    self._stop_as[job_id] = end
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
            if job is not None and job.status is JobStatus.OPTIMIZING and job.node is None:
                self._forget(job_id)
                self._lifecycle.finished(job, unhandled)
