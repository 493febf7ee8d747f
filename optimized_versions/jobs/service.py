"""Submitting a job: the profile, the source it will read, a retried request answered with
the earlier job (a collected file brought back while it is still on disk), or a new record:
completed at once with a copy of its output key that is on disk already, waiting on the
run that makes that output now, or a new job (``jobs.outputs``: one output per key).

Another user's output is shared only with a user Jellyfin lets see the item (asked once
per such request); standalone (no Jellyfin to ask), only a user's own records share."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from ..errors import BadRequest, TooManyRequests
from ..jellyfin.client import JellyfinClient
from ..jellyfin.sources import choose_source
from ..jellyfin.urls import redact_url, secrets_in
from . import cache
from .lifecycle import Lifecycle
from .models import Job, JobStatus, Principal
from .outputs import output_key, video_id
from .store import JobStore

# A repeated request answers with the earlier job while that one is still useful.
_REUSABLE = (
    JobStatus.QUEUED,
    JobStatus.PENDING_DOWNLOADS,
    JobStatus.OPTIMIZING,
    JobStatus.COMPLETED,
    JobStatus.READY_FOR_REMOVAL,
)


class JobService:
    def __init__(
        self,
        store: JobStore,
        config: Config,
        profiles: frozenset[str],
        clock: Callable[[], float],
        jellyfin: JellyfinClient | None,
        lifecycle: Lifecycle,
    ) -> None:
        self._store = store
        self._config = config
        self._profiles = profiles
        self._clock = clock
        self._jellyfin = jellyfin
        self._lifecycle = lifecycle

    async def submit(self, principal: Principal, token: str, body: dict[str, Any]) -> str:
        """The id of the job for this request (an earlier one, or a new one)."""
        profile = body.get("profile") or self._config.default_profile
        if profile not in self._profiles:
            known = ", ".join(sorted(self._profiles))
            raise BadRequest(f"invalid profile: {profile!r} does not exist (known: {known})")
        # Before the duplicate check: from there to store.add nothing awaits, so two
        # concurrent retries of one request cannot both create a job (nor two requests of
        # one key both start a run of it).
        source = await choose_source(
            body["url"], body["itemId"], principal.user_id, token, self._config, self._jellyfin
        )
        input_url = redact_url(body["url"])
        key = output_key(source, input_url, body["itemId"], profile, body.get("item") or {})
        # ... the same for this one: whether this user may take another user's output
        shared = self._store.others_have(key, principal.user_id) and await self._may_see(
            principal, token, source, body["itemId"]
        )
        earlier = self._store.find_duplicate(
            principal.user_id, body["deviceId"], body["itemId"], profile, _REUSABLE
        )
        if earlier is not None and earlier.status is JobStatus.READY_FOR_REMOVAL:
            if cache.file_intact(earlier.output_path, earlier.size):  # collected, file still here
                self._lifecycle.reuse(earlier)
            else:
                earlier = None
        if earlier is not None:
            return earlier.id
        limit = self._config.max_queued_per_user
        if limit and self._store.count_waiting(principal.user_id) >= limit:
            raise TooManyRequests(
                f"{limit} of your jobs are already waiting (MAX_QUEUED_PER_USER): "
                "let some finish or cancel them first"
            )
        owner = None if shared else principal.user_id  # whose records' outputs it may take
        copy = next(
            (j for j in self._store.copies(key, owner) if cache.file_intact(j.output_path, j.size)),
            None,
        )
        maker = None if copy is not None else self._store.maker(key, owner)
        job_id = str(uuid.uuid4())
        job = Job(
            id=job_id,
            owner_id=principal.user_id,
            owner_name=principal.name,
            device_id=body["deviceId"],
            item_id=body["itemId"],
            item=body.get("item") or {},
            input_url=input_url,
            file_extension=body.get("fileExtension"),
            profile=profile,
            status=JobStatus.QUEUED,
            created_at=self._clock(),
            output_path=str(cache.output_path(self._config.cache_dir, job_id)),
            output_key=key,
        )
        if copy is not None:
            self._lifecycle.shared.copy(job, copy)
        elif maker is not None:
            self._lifecycle.shared.follow(job, maker, source)
        else:
            self._lifecycle.submit(job, source)
        return job.id

    async def _may_see(self, principal: Principal, token: str, source: str, item_id: str) -> bool:
        """Whether Jellyfin lets this user see the item the source reads (a file from the
        mounted folder: Jellyfin named it to this user already)."""
        if urlsplit(source).scheme not in ("http", "https"):
            return self._config.jellyfin_url is not None
        if self._jellyfin is None:
            return False  # standalone: no one to ask who may see what
        user_token = next(iter(secrets_in(source)), token)
        seen = await self._jellyfin.item(principal.user_id, video_id(source, item_id), user_token)
        return seen is not None
