"""Worker hosts, the server's side: SAQ queues on PostgreSQL, one per worker host, behind
the queue proxy; what workers report flows into the job store.

The job store (SQLite) stays the one source of truth for a job's state: the phones read it,
and the embedded default has nothing else. SAQ carries the work to a host and back: a
job's record there (key = our job id) is its lease on that host, with SAQ's heartbeats,
sweep, abort and progress. Every update a worker sends passes through the queue proxy
(``proxy.py``) and is written to the job store as it passes; SAQ's own retries are off
(``retries=1``): a job a host gives back or loses returns to our queue and is placed
again, perhaps elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from saq import Status
from saq.queue.postgres import PostgresQueue

from ..catalog.device import Device
from ..catalog.profiles import Profile
from ..hardware.ladder import Hardware
from ..jobs.lifecycle import Lifecycle, Requeued
from ..jobs.models import Job, JobStatus
from ..jobs.store import JobStore
from ..waits import Hold, Why
from .drains import Drains
from .fleet import SOFTWARE, Fleet, Node, backend_for, rank
from .protocol import (
    FUNCTION,
    JOB_HEARTBEATS,
    dispatch_key,
    job_payload,
    local_best,
    queue_name,
)
from .proxy import QueueProxy
from .reports import Reports
from .uploads import Uploads

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        lifecycle: Lifecycle,
        hardware: Hardware,
        profiles: dict[str, Profile],
        url: str,
        heartbeat: float,
        uploads: Uploads,
        clock: Callable[[], float],
        drains: Drains | None = None,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle  # every report becomes a change there
        self._hardware = hardware
        self._profiles = profiles
        self._url = url
        self.heartbeat = heartbeat
        self._uploads = uploads  # outputs coming back from the hosts
        self._clock = clock
        self.fleet = Fleet(hardware.preference, lost_after=2 * heartbeat)
        reports = Reports(store, lifecycle, uploads, profiles)
        self._proxy = QueueProxy(self.fleet, self.queue, reports, lifecycle, clock)
        self._drains = drains  # an admin's drains, kept across restarts
        if drains is not None:
            self.fleet.drained = drains.names()
        self._pool: AsyncConnectionPool | None = None
        self._queues: dict[str, PostgresQueue] = {}
        self._queues_lock = asyncio.Lock()  # one queue object per node, made once
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._pool = AsyncConnectionPool(self._url, open=False, kwargs={"autocommit": True})
        await self._pool.open(wait=True, timeout=30)
        # SAQ makes its tables on a queue's first connect, under a lock that a second
        # connect does not wait for: make them now, before any worker asks
        await PostgresQueue(pool=self._pool, name="server").connect()
        now = self._clock()
        for job in self._store.jobs(statuses=[JobStatus.OPTIMIZING]):
            if job.node is not None:  # still that host's until it is lost
                self.fleet.heard(job.node, now).running.add(job.id)
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="dispatch-send"),
            asyncio.create_task(self._watch_loop(), name="dispatch-watch"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._queues.values():
            await queue.disconnect()
        if self._pool is not None:
            await self._pool.close()

    async def queue(self, node: str) -> PostgresQueue:
        async with self._queues_lock:
            if node not in self._queues:
                queue = PostgresQueue(pool=self._pool, name=queue_name(node))
                await queue.connect()
                self._queues[node] = queue
            return self._queues[node]

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [n.describe(now, self.fleet.lost_after) for n in self.fleet.nodes.values()]

    def drain(self, name: str, draining: bool) -> bool:
        """An admin drains ``name`` (it takes no new job; its running jobs finish) or
        resumes it; False when no such node is known."""
        if not self.fleet.drain(name, draining):
            return False
        if self._drains is not None:
            self._drains.set(name, draining)
        log.info("worker host %s %s by an admin", name, "drained" if draining else "resumed")
        self._lifecycle.nudge()  # resumed: it may take waiting jobs now
        return True

    # -- the scheduler's side (jobs.scheduler.Remote) ----------------------------------

    def why_not(self, profile: Profile) -> Hold | None:
        reasons = self.fleet.why_not(profile, self._clock())
        return Hold.of(Why.WORKER_HOSTS, hosts=", ".join(reasons)) if reasons else None

    def choose(self, profile: Profile, local: Device | None) -> str | None:
        here = None
        if local is not None:
            best = {profile.video.codec: local_best(self._hardware, local, profile.video.codec)}
            here = rank(best, profile, self.fleet.preference)
        node = self.fleet.choose(profile, here, self._clock())
        return None if node is None else node.name

    def send(self, job: Job, node: str) -> None:
        host = self.fleet.nodes[node]
        host.running.add(job.id)
        if backend_for(host.best, self._profiles[job.profile]) == SOFTWARE:
            host.on_cpu.add(job.id)
        self._outbox.put_nowait((job.id, node))

    def holds(self, job: Job) -> bool:
        node = self.fleet.nodes.get(job.node or "")
        return node is not None and job.id in node.running

    async def stop(self, job: Job) -> None:
        """Cancelled: its worker host stops ffmpeg (q, then kill)."""
        await self.cancel(job)

    async def cancel(self, job: Job) -> None:
        node = self.fleet.nodes.get(job.node or "")
        if node is not None:
            node.running.discard(job.id)
        self._uploads.discard(job)
        await self._abort(job.node or "", dispatch_key(job), "cancelled")

    # -- the queue proxy (web.workers mounts it behind worker tokens) -------------------

    async def proxy(self, name: str, body: str) -> str | None:
        """A worker's SAQ request (``nodes/proxy.py``)."""
        return await self._proxy.answer(name, body)

    def _requeue(self, job: Job, why: str) -> None:
        self._uploads.discard(job)
        self._lifecycle.finished(job, Requeued(f"back in the queue: {why}"))

    # -- loops ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            job_id, node = await self._outbox.get()
            job = self._store.get(job_id)
            if job is None or job.status is not JobStatus.OPTIMIZING or job.node != node:
                continue
            key = dispatch_key(job)
            try:
                queue = await self.queue(node)
                await queue.enqueue(
                    FUNCTION,
                    key=key,
                    timeout=0,
                    heartbeat=int(max(1, JOB_HEARTBEATS * self.heartbeat)),
                    retries=1,
                    ttl=24 * 3600,
                    job=job_payload(job, self._store.source_url(job.id) or ""),
                )
            except Exception as exc:  # PostgreSQL gone: the job waits here again
                log.error("job %s: could not send it to %s: %s", job.id, node, exc)
                self.fleet.nodes[node].running.discard(job.id)
                self._requeue(job, f"the queue database failed ({type(exc).__name__})")
                self._lifecycle.nudge()

    async def _watch_loop(self) -> None:
        """Every heartbeat: a lost node's jobs come back; SAQ's sweep finds stuck jobs. Not
        before the job heartbeat has passed once since the start: a restart of this server
        must not sweep jobs whose hosts had no one to report to meanwhile."""
        await asyncio.sleep(2 * self.heartbeat)
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._watch()
            except Exception:
                log.exception("watching the worker hosts failed")

    async def _watch(self) -> None:
        now = self._clock()
        for node in self.fleet.lost(now):
            log.warning("worker host %s lost: %d job(s) back in the queue", node.name,
                        len(node.running))  # fmt: skip
            for job_id in sorted(node.running):
                await self._take_back(node, job_id, f"worker host {node.name} stopped answering")
            self._lifecycle.nudge()
        for name, queue in list(self._queues.items()):
            swept = {key.rpartition(".")[0] for key in await queue.sweep(abort=1.0)}
            node = self.fleet.nodes[name]
            for job_id in node.running & swept:
                await self._take_back(node, job_id, f"no heartbeat from {name} for this job")
                self._lifecycle.nudge()

    async def _take_back(self, node: Node, job_id: str, why: str) -> None:
        node.running.discard(job_id)
        job = self._store.get(job_id)
        if job is not None and job.status is JobStatus.OPTIMIZING and job.node == node.name:
            key = dispatch_key(job)
            self._requeue(job, why)
            await self._abort(node.name, key, why)

    async def _abort(self, node: str, key: str, why: str) -> None:
        """End the dispatch ``key`` in SAQ (its worker's abort check stops ffmpeg)."""
        try:
            queue = await self.queue(node)
            saq_job = await queue.job(key)
            if saq_job is not None and saq_job.status not in (
                Status.COMPLETE,
                Status.FAILED,
                Status.ABORTED,
            ):
                await queue.abort(saq_job, why)
        except Exception as exc:
            log.error("job %s: could not abort it on %s: %s", key, node, exc)
