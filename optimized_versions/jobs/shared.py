"""Records that share one output (``jobs.outputs``): part of the lifecycle, the only other
module that writes a job. A record that waits on another's run (its *maker*) is settled when
the maker ends: completed with its output, failed with its error, or, when the maker was
cancelled or removed (or its file is gone), the oldest waiting record becomes the maker and
runs. ``settle_all`` (the lifecycle's ``recover``) leaves none hanging on a maker a restart
left behind."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..waits import Hold, Why
from . import cache
from .models import ACTIVE, DOWNLOADABLE, Job, JobStatus
from .store import InvalidTransition, JobStore

log = logging.getLogger(__name__)


class SharedOutputs:
    def __init__(
        self, store: JobStore, clock: Callable[[], float], nudge: Callable[[], None]
    ) -> None:
        self._store = store
        self._clock = clock
        self._nudge = nudge

    def follow(self, job: Job, maker: Job, source_url: str) -> None:
        """A new record that waits on ``maker``'s run of the same output (never run itself
        unless it takes over)."""
        hold = Hold.of(Why.SAME_COPY)
        job.maker_id, job.wait_reason = maker.id, str(hold)
        self._store.add(job, source_url)
        self._store.note_wait(job, str(hold), hold.label)  # counted as a hold of its kind
        self._nudge()  # its maker may be held where this one's device has room (queue.py)

    def copy(self, job: Job, of: Job) -> None:
        """A new record completed at once with the output ``of`` holds (no run)."""
        for name, value in _shared(of, self._clock()).items():
            setattr(job, name, value)
        job.status = JobStatus.COMPLETED
        self._store.add(job, None)
        self._nudge()

    def pass_on(self, maker: Job, heir: Job) -> None:
        """``maker`` is held by its device's downloads limit: ``heir``, a record waiting on
        its run on a device with room, makes the output instead; the others (``maker``
        too) wait on it."""
        if maker.status is JobStatus.PENDING_DOWNLOADS:
            self._store.transition(maker, JobStatus.QUEUED)
        self._store.wait_on(heir, None, None)
        for job in self._store.followers(maker.id):
            self._store.wait_on(job, heir.id, job.wait_reason)
        self._store.wait_on(maker, heir.id, str(Hold.of(Why.SAME_COPY)))
        log.info("job %s: makes the output of held job %s", heir.id, maker.id)
        self._nudge()

    def settle_quietly(self, maker_id: str) -> bool:
        """``settle``, a failure logged (the next sweep's recover settles them): whether done."""
        try:
            self.settle(maker_id)
        except Exception:
            log.exception("job %s: the records waiting on it could not be settled", maker_id)
            return False
        return True

    def settle(self, maker_id: str) -> None:
        """The records waiting on ``maker_id``'s run, once it ended: completed with its
        output, failed with its error, or (cancelled, removed, its file gone) handed over."""
        followers = self._store.followers(maker_id)
        if not followers:
            return
        maker = self._store.get(maker_id)
        if maker is not None and maker.status in ACTIVE:
            return  # still being made (queued again, or running)
        now = self._clock()
        if (
            maker is not None
            and maker.status in DOWNLOADABLE
            and cache.file_intact(maker.output_path, maker.size)
        ):
            changes = {**_shared(maker, now), "maker_id": None, "wait_reason": None}
            for job in followers:
                with contextlib.suppress(InvalidTransition):  # cancelled meanwhile
                    self._store.transition(job, JobStatus.COMPLETED, **changes)
        elif maker is not None and maker.status is JobStatus.FAILED:
            for job in followers:  # the same source and profile: the same failure
                with contextlib.suppress(InvalidTransition):
                    self._store.transition(
                        job,
                        JobStatus.FAILED,
                        error=maker.error,
                        finished_at=now,
                        maker_id=None,
                        wait_reason=None,
                    )
        else:
            self._hand_over(maker_id, followers)
        self._nudge()

    def _hand_over(self, maker_id: str, followers: list[Job]) -> None:
        """The maker was cancelled or removed: the records waiting on it wait on another
        run of their key, or the oldest of them makes it."""
        key = followers[0].output_key
        other = self._store.maker(key) if key is not None else None
        if other is None or other.id == maker_id:
            other, followers = followers[0], followers[1:]
            self._store.wait_on(other, None, None)  # the scheduler runs it now
            log.info("job %s: makes the output job %s no longer makes", other.id, maker_id)
        for job in followers:
            self._store.wait_on(job, other.id, job.wait_reason)

    def settle_all(self) -> None:
        for maker_id in dict.fromkeys(j.maker_id for j in self._store.followers()):
            if maker_id is not None:
                self.settle(maker_id)


def _shared(of: Job, now: float) -> dict[str, Any]:
    """A record's changes as it takes the output ``of`` holds (the same file, bytes and
    checksum; how it was made), finished now."""
    return {
        "progress": 100.0,
        "speed": None,
        "size": of.size,
        "checksum": of.checksum,
        "backend": of.backend,
        "encoder": of.encoder,
        "decoder": of.decoder,
        "fallbacks": of.fallbacks,
        "tracks": of.tracks,
        "plan": of.plan,
        "command": of.command,
        "quality": of.quality,
        "finished_at": now,
        "output_path": of.output_path,
    }
