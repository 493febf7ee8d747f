"""The scheduler: which waiting job runs next, and where (through placement): on this
server's devices (``jobs.local``) or on a worker host (``Remote``). It changes no job
itself: the lifecycle does, and the executors report to it.

Each pass also recovers jobs that a finish left stranded, and, every ``SWEEP_EVERY``
seconds, any job left optimizing on no executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable

from ..config import Config
from ..logs import Every
from .lifecycle import Lifecycle
from .local import LocalRuns
from .models import Job
from .placement import Placed, Placer, Wait
from .queue import FairQueue
from .remote import Remote
from .runner import Runner
from .store import JobStore

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0  # seconds between looks for jobs optimizing on no executor


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        lifecycle: Lifecycle,
        local: LocalRuns,
        runner: Runner,
        config: Config,
        clock: Callable[[], float],
        placer: Placer,
        remote: Remote | None = None,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._local = local
        self._runner = runner
        self._config = config
        self._clock = clock
        self._placer = placer
        self._queue = FairQueue(store, config, lifecycle)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._storage_log = Every(60.0)
        self.remote = remote  # worker hosts, when QUEUE_URL is set
        self._waiting: tuple[int, list[Job]] = (-1, [])  # the store's version -> waiting jobs
        self._swept = clock()

    @property
    def running(self) -> int:
        return self._local.running

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")
        self.wake()

    async def close(self) -> None:
        """Stop taking work and put running jobs back in the queue for the next start."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self._local.close()

    def wake(self) -> None:
        self._wake.set()

    # -- the queue ---------------------------------------------------------------------

    async def _loop(self) -> None:
        next_due: float | None = None
        while True:
            now = self._clock()
            sweep_due = self._swept + SWEEP_EVERY
            due = sweep_due if next_due is None else min(next_due, sweep_due)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - now)):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._lifecycle.stranded or self._clock() >= self._swept + SWEEP_EVERY:
                    self._swept = self._clock()
                    self._lifecycle.recover(keep_remote=False)
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
        eligible, room = self._queue.apply_cache_limit(due)
        eligible = self._queue.in_order(eligible)  # again after each launch only: O(n log n)
        while eligible:
            job = eligible.pop(0)
            profile = self._runner.profiles[job.profile]
            if self.remote is None and (never := self._placer.never(profile)) is not None:
                self._lifecycle.refuse(job, never)  # no device here ever will, nor elsewhere
                continue
            where = self._placer.place(profile, only=job.pinned_device)
            here = where.device if isinstance(where, Placed) else None
            node = None
            if self.remote is not None and job.pinned_device is None:
                node = self.remote.choose(profile, here)
            if node is not None:
                self._send(job, node)
            elif here is not None:
                self._queue.served(job)
                self._local.launch(job, here)
            else:
                assert isinstance(where, Wait)
                reason = where.reason
                remote = self.remote if job.pinned_device is None else None
                if remote is not None and (nodes := remote.why_not(profile)):  # e.g. drains
                    reason = reason.plus(nodes)
                self._lifecycle.wait(job, reason)
                continue
            room[job.device_id] -= 1
            if room[job.device_id] <= 0:  # its output will count against the limit too
                eligible = [j for j in eligible if j.device_id != job.device_id]
            eligible = self._queue.in_order(eligible)  # its user and device had their turn
        return min(later, default=None)

    def _send(self, waiting: Job, node: str) -> None:
        """To a worker host: the job is its node's now (its heartbeats keep it there)."""
        assert self.remote is not None
        self._queue.served(waiting)
        job = self._lifecycle.started(waiting, node)
        log.info("job %s sent to worker host %s", job.id, node)
        self.remote.send(job, node)
