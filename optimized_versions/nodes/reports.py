"""What a worker host tells of a job it runs (progress, its end, its output), turned into
lifecycle changes. The messages were checked at the boundary (``messages``); a finish
report that is no Outcome fails the job by name, and so does an output that is not the
media the report and the profile say (the same verification as a local output)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from saq import Status

from ..catalog.profiles import Profile
from ..errors import TranscodeError
from ..jobs.lifecycle import Completed, End, Failed, Lifecycle, Requeued
from ..jobs.models import Job, JobStatus
from ..jobs.outcome import MalformedReport, Outcome
from ..jobs.output import Expected, verify
from ..jobs.store import JobStore
from .fleet import Node
from .messages import Message, Progress
from .protocol import dispatch_key
from .uploads import Uploads

log = logging.getLogger(__name__)


class Reports:
    def __init__(
        self,
        store: JobStore,
        lifecycle: Lifecycle,
        uploads: Uploads,
        profiles: dict[str, Profile],
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._uploads = uploads
        self._profiles = profiles

    def current(self, node: str, key: str) -> Job | None:
        """The job whose current dispatch ``key`` is, while it is ``node``'s; else None
        (it ended, or went elsewhere while the host was lost)."""
        job = self._store.get(key.rpartition(".")[0])
        if job is None or job.status is not JobStatus.OPTIMIZING or job.node != node:
            return None
        return job if dispatch_key(job) == key else None

    async def mirror(self, node: Node, message: Message) -> None:
        """A worker's ``update``, ``finish`` or ``retry`` of its job."""
        key, kind, request = message.job_id, message.kind, message.fields
        assert message.job is not None
        job = self._store.get(key)
        if job is None or job.status is not JobStatus.OPTIMIZING or job.node != node.name:
            node.running.discard(key)
            return  # cancelled or requeued meanwhile: the worker learns by its abort check
        if message.job["key"] != dispatch_key(job):
            return  # an earlier dispatch of the job to this host
        if kind == "update":
            if "meta" in request:  # SAQ's own updates (its job now active) carry none
                sent = Progress.of(request["meta"])
                self._lifecycle.progress(
                    job, sent.percent, sent.speed, sent.size, sent.frames, sent.plan
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
            return await self._completed(node, job, result)
        if "requeue" in result or request.get("status") == Status.ABORTED:
            why = result.get("requeue") or f"{node.name} stopped it"
            return Requeued(f"back in the queue: {why}")
        error = result.get("error")
        return Failed(error if isinstance(error, str) and error else f"failed on {node.name}")

    async def _completed(self, node: Node, job: Job, result: dict[str, Any]) -> End:
        """The worker's output arrived, verified on upload against the digest the worker
        sent; it becomes the job's output once the lifecycle has accepted the completion,
        only when that digest is the checksum it reports too and the file is the media the
        profile and the report say (read back as a local output is; the item's length as
        Jellyfin lists it stands for the source's)."""
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
        expected = Expected.of_report(self._profiles[job.profile], outcome, job.item_duration)
        try:
            await asyncio.to_thread(verify, path, expected)
        except TranscodeError as exc:
            log.warning("job %s: the output from %s is refused: %s", job.id, node.name, exc)
            return Failed(f"the output from worker host {node.name} is refused: {exc}")
        return Completed(outcome, produced=path)
