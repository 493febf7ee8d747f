"""What a worker host tells of a job it runs (progress, its end, its output), checked and
turned into lifecycle changes. Figures from another machine are data: a non-number or a
non-finite one is read as 0; a malformed finish report fails the job by name."""

from __future__ import annotations

import json
import math
from typing import Any

from saq import Status

from ..jobs.lifecycle import Completed, End, Failed, Lifecycle, Requeued
from ..jobs.models import Job, JobStatus
from ..jobs.outcome import MalformedReport, Outcome
from ..jobs.store import JobStore
from .fleet import Node
from .protocol import dispatch_key
from .uploads import Uploads


class Reports:
    def __init__(self, store: JobStore, lifecycle: Lifecycle, uploads: Uploads) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._uploads = uploads

    def current(self, node: str, key: str) -> Job | None:
        """The job whose current dispatch ``key`` is, while it is ``node``'s; else None
        (it ended, or went elsewhere while the host was lost)."""
        job = self._store.get(key.rpartition(".")[0])
        if job is None or job.status is not JobStatus.OPTIMIZING or job.node != node:
            return None
        return job if dispatch_key(job) == key else None

    async def mirror(self, node: Node, kind: str, key: str, request: dict[str, Any]) -> None:
        """A worker's ``update``, ``finish`` or ``retry`` of its job ``key`` (a job id)."""
        job = self._store.get(key)
        sent = json.loads(request["job"])
        if job is None or job.status is not JobStatus.OPTIMIZING or job.node != node.name:
            node.running.discard(key)
            return  # cancelled or requeued meanwhile: the worker learns by its abort check
        if sent.get("key") != dispatch_key(job):
            return  # an earlier dispatch of the job to this host
        if kind == "update":
            meta = sent.get("meta") or {}
            percent, frames = _number(meta.get("percent")), _number(meta.get("frames"))
            speed, size, plan = (
                _number(meta.get("speed")),
                _number(meta.get("size")),
                meta.get("plan"),
            )
            self._lifecycle.progress(
                job,
                min(percent, 100.0),
                speed or None,
                int(size),
                int(frames),
                plan if isinstance(plan, str) else None,
            )
            return
        end: End
        try:  # still the host's while its output is hashed: no sweep requeues it meanwhile
            if kind == "retry":
                end = Requeued(f"back in the queue: {node.name} gave it back")
            else:
                end = await self._finish_report(node, job, request)
        finally:  # whatever happens, it runs there no more
            node.running.discard(key)
        if not isinstance(end, Completed):  # what came of its upload is not wanted
            self._uploads.discard(job)
        self._lifecycle.finished(job, end)

    async def _finish_report(self, node: Node, job: Job, request: dict[str, Any]) -> End:
        result = request.get("result")
        result = result if isinstance(result, dict) else {}
        if request.get("status") == Status.COMPLETE and "checksum" in result:
            return await self._completed(job, result)
        if "requeue" in result or request.get("status") == Status.ABORTED:
            why = result.get("requeue") or f"{node.name} stopped it"
            return Requeued(f"back in the queue: {why}")
        error = result.get("error")
        return Failed(error if isinstance(error, str) and error else f"failed on {node.name}")

    async def _completed(self, job: Job, result: dict[str, Any]) -> End:
        """The worker's output arrived, verified on upload against the digest the worker
        sent; it becomes the job's output once the lifecycle has accepted the completion
        (and only when that digest is the checksum it reports too)."""
        try:
            outcome = Outcome.from_report(result)
        except MalformedReport as exc:
            return Failed(f"the worker host's report was malformed: {exc}")
        sha256 = await self._uploads.received_sha256(job)
        if sha256 is None or sha256 != outcome.checksum:
            why = "never arrived" if sha256 is None else "does not match its reported checksum"
            return Failed(f"the worker's output {why}")
        path = self._uploads.received(job)
        assert path is not None
        return Completed(outcome, produced=path)


def _number(value: object) -> float:
    """A figure from a worker's report: finite and not negative, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))
