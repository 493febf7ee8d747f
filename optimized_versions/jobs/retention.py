"""The retention rules: outputs go after TIME_TO_KEEP_FILES, collected ones after the grace
period (REMOVAL_GRACE), failed and cancelled records after TIME_TO_KEEP_FILES too; and
DELETE /delete-cache, which drops every output at once. A file several records share
(one output key) goes with the last record that holds it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from ..config import Config
from ..media.ffmpeg import remove_quietly
from . import cache
from .lifecycle import Lifecycle
from .models import DOWNLOADABLE, JobStatus
from .rows import FileRecord
from .store import JobStore

log = logging.getLogger(__name__)


def drop(store: JobStore, lifecycle: Lifecycle, job: FileRecord) -> None:
    """A job gone: its output (unless another record holds the same file: records of one
    output key share it), then its record."""
    if not store.holds_output(job.output_path, job.id):
        remove_quietly(Path(job.output_path))
    lifecycle.remove(job.id)


class Janitor:
    def __init__(
        self,
        store: JobStore,
        lifecycle: Lifecycle,
        config: Config,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle  # removes the records (a device may be under its limit)
        self._config = config
        self._clock = clock

    def sweep(self) -> int:
        """Apply the retention rules once; returns how many jobs were removed."""
        now = self._clock()
        keep_for = self._config.keep_seconds
        removed = 0
        for job in self._store.files([*DOWNLOADABLE, JobStatus.FAILED, JobStatus.CANCELLED]):
            finished = job.finished_at if job.finished_at is not None else job.created_at
            expired = now - finished >= keep_for
            collected = (
                job.status is JobStatus.READY_FOR_REMOVAL
                and job.collected_at is not None
                and now - job.collected_at >= self._config.removal_grace
            )
            if expired or collected:
                drop(self._store, self._lifecycle, job)
                removed += 1
        return removed

    def clear_cache(self) -> int:
        """Delete every output (running jobs were stopped first); returns jobs dropped."""
        finished = self._store.files(DOWNLOADABLE)
        for job in finished:
            drop(self._store, self._lifecycle, job)
        running = self._store.files([JobStatus.OPTIMIZING])  # started since the caller looked
        cache.remove_strays(self._config.cache_dir, set(), (job.output_path for job in running))
        return len(finished)

    async def run_sweeps(self) -> None:
        while True:
            await asyncio.sleep(self._config.cleanup_interval)
            try:
                self.sweep()
            except Exception:  # the next sweep may succeed; the server keeps serving
                log.exception("retention sweep failed")
