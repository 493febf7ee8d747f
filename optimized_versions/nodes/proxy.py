"""The queue proxy: a worker host's SAQ requests (``POST /worker/queue``, behind its worker
token), checked at the boundary (``messages``) and kept to its own queue; what it tells of
its jobs goes to ``reports``. A malformed request marks the host unhealthy (``fleet``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from saq import Job as SaqJob
from saq import Status
from saq.queue.http import HttpProxy
from saq.queue.postgres import PostgresQueue

from ..jobs.lifecycle import Lifecycle
from . import messages
from .fleet import Fleet, Node
from .protocol import OWN_JOB, Refused
from .reports import Reports

log = logging.getLogger(__name__)

# An idle worker's dequeue waits on the server. SAQ's default wait LISTENs, which holds a
# pool connection for the whole wait in each node's own queue object: four idle hosts took
# the pool's four connections and every other queue call waited for one (bench_workers.py).
# Polling holds one only for each short look, at one query a second per idle host.
DEQUEUE_POLL = 1.0


class QueueProxy:
    def __init__(
        self,
        fleet: Fleet,
        queue: Callable[[str], Awaitable[PostgresQueue]],
        reports: Reports,
        lifecycle: Lifecycle,
        clock: Callable[[], float],
    ) -> None:
        self._fleet = fleet
        self._queue = queue  # a node's own queue object (the dispatcher's, made once)
        self._reports = reports
        self._lifecycle = lifecycle
        self._clock = clock

    async def answer(self, name: str, body: str) -> str | None:
        """A worker's SAQ request, checked (``messages``) and kept to its own queue."""
        node = self._fleet.heard(name, self._clock())
        try:
            return await self._answer(node, body)
        except messages.Malformed as exc:  # its problem: no new job for it, and one line
            if self._fleet.unhealthy(name, exc.message):
                log.warning("worker host %s is unhealthy: %s", name, exc.message)
            raise

    async def _answer(self, node: Node, body: str) -> str | None:
        name, message = node.name, messages.parse(body)
        kind, queue = message.kind, await self._queue(name)
        if kind in OWN_JOB:
            if not await self._own_job(node, queue, message):
                return None
        elif kind == "jobs":  # one by one: each read is limited to this node's queue
            found = [await queue.job(key) for key in message.fields["job_keys"]]
            return json.dumps([j.to_dict() if j else None for j in found])
        elif kind in ("sweep", "schedule"):
            return "[]"  # the server sweeps (it holds the lock), and schedules nothing
        elif kind == "write_worker_info":
            if not message.fields["worker_id"].startswith(f"{name}@"):
                raise Refused(f"{name} may write only its own worker info")
            self._fleet.heard(name, self._clock(), message.fields["info"]["metadata"])
            self._lifecycle.nudge()  # a node with free slots may take waiting jobs now
        elif kind == "dequeue":
            body = json.dumps({**message.fields, "poll_interval": DEQUEUE_POLL})
            return await self._dequeue(node, queue, body)
        elif kind != "job":
            raise Refused(f"a worker may not ask {kind!r}")
        try:
            return await HttpProxy(queue).process(body)
        except (TypeError, ValueError) as exc:  # SAQ could not read the job it sent
            raise messages.Malformed(f"SAQ cannot read the request: {str(exc)[:200]}") from None

    async def _own_job(self, node: Node, queue: PostgresQueue, message: messages.Message) -> bool:
        """What a worker tells of a job in its queue, mirrored into the store; False when
        SAQ is not to be told (a job given back is ended here)."""
        assert message.job is not None
        if message.job["queue"] != queue.name:
            raise Refused(f"{node.name} may speak only of jobs in its own queue")
        if message.job_id in node.running:
            await self._reports.mirror(node, message)
        if message.kind == "retry":  # given back (the worker stops): we place it again
            saq_job = _deserialize(queue, message.fields["job"])
            await queue.finish(saq_job, Status.ABORTED, error="given back")
            return False
        return True

    async def _dequeue(self, node: Node, queue: PostgresQueue, body: str) -> str | None:
        """A dispatch the store no longer gives this host (the job ended, or went elsewhere
        while the host was lost) is ended in SAQ instead of handed out."""
        answer = await HttpProxy(queue).process(body)
        saq_job = _deserialize(queue, answer) if answer else None
        if saq_job is None:
            return answer
        if self._reports.current(node.name, saq_job.key) is not None:
            return answer
        log.info("dispatch %s is no longer %s's: not handed out", saq_job.key, node.name)
        await queue.finish(saq_job, Status.ABORTED, error="no longer this host's")
        return None


def _deserialize(queue: PostgresQueue, text: str) -> SaqJob:
    """A SAQ job from its JSON (checked against ``messages.SAQ_JOB`` when a worker sent
    it); what SAQ itself cannot read is the sender's problem."""
    try:
        job = queue.deserialize(text)
    except (TypeError, ValueError) as exc:
        raise messages.Malformed(f"SAQ cannot read the job: {str(exc)[:200]}") from None
    if job is None:
        raise messages.Malformed("the request names no job")
    return job
