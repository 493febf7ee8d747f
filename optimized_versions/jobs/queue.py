"""The order of the queue: which waiting job may go next, and which goes first.

start-job requests first (in the order asked), then round-robin across users, then across
a user's client devices, first come first served within a device; a client device whose
uncollected outputs reach MAX_CACHED_PER_USER waits as ``pending downloads limit``, unless
a record that waits on its run (the same output) is on a device with room: that record
makes the output instead, and the held one waits on it. Jobs the rules made (device
``rules``) go behind every request of a person and have no such limit (PUBLISH_MAX_BYTES
caps them).
"""

from __future__ import annotations

from ..config import Config
from ..waits import Hold, Why
from .lifecycle import Lifecycle
from .models import RULES_DEVICE, Job, JobStatus
from .store import JobStore


class FairQueue:
    def __init__(self, store: JobStore, config: Config, lifecycle: Lifecycle) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._config = config
        self._user_turn: dict[str, int] = {}  # user id -> turn it was last served
        self._device_turn: dict[str, int] = {}  # client device id -> turn it was last served
        self._turn = 0

    def served(self, job: Job) -> None:
        """The job was started: its user and device wait for the others' turns."""
        self._turn += 1
        self._user_turn[job.owner_id] = self._device_turn[job.device_id] = self._turn

    def in_order(self, eligible: list[Job]) -> list[Job]:
        """The user served longest ago goes first, so a season queued by one user does not
        hold back another user's film by more than one job."""
        return sorted(
            eligible,
            key=lambda j: (
                j.promoted_at is None,
                j.promoted_at or 0.0,
                j.device_id == RULES_DEVICE,
                self._user_turn.get(j.owner_id, -1),
                self._device_turn.get(j.device_id, -1),
                j.created_at,
            ),
        )

    def apply_cache_limit(self, waiting: list[Job]) -> tuple[list[Job], dict[str, float]]:
        """MAX_CACHED_PER_USER: a client device whose uncollected (and running) jobs reach
        the limit waits. Returns the jobs that may start and the room left per device."""
        limit = self._config.max_cached_per_user or float("inf")
        room: dict[str, float] = {}
        eligible = []
        for job in waiting:
            if self._room(job.device_id, room, limit) <= 0:
                heir = next(
                    (
                        f
                        for f in self._store.followers(job.id)
                        if self._room(f.device_id, room, limit) > 0
                    ),
                    None,
                )
                if heir is not None:  # a record waiting on it, on a device with room
                    self._lifecycle.shared.pass_on(job, heir)  # makes it (on the next pass)
                    continue
                why = Hold.of(
                    Why.DOWNLOADS_LIMIT,
                    device=job.device_id,
                    limit=self._config.max_cached_per_user,
                )
                self._lifecycle.hold(job, why)
            else:
                self._lifecycle.unhold(job)
                eligible.append(job)
        return eligible, room

    def _room(self, device_id: str, room: dict[str, float], limit: float) -> float:
        if device_id == RULES_DEVICE:  # the rules' own: PUBLISH_MAX_BYTES limits them
            room[device_id] = float("inf")
        elif device_id not in room:
            done = self._store.count(JobStatus.COMPLETED, device_id)
            running = self._store.count(JobStatus.OPTIMIZING, device_id)
            room[device_id] = limit - done - running
        return room[device_id]
