"""At start (or after a crash), the store and the cache folder made to agree: writers left
by the earlier run end, interrupted jobs go back to the queue, a finished job whose file
vanished or was cut is dropped, and partial and orphaned files go."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from . import cache
from .lifecycle import Lifecycle
from .models import DOWNLOADABLE, JobStatus
from .reaper import end_stale_writers
from .retention import drop
from .store import JobStore

log = logging.getLogger(__name__)


def reconcile(store: JobStore, lifecycle: Lifecycle, config: Config) -> None:
    """Make the store and the cache folder agree after a start (or a crash)."""
    end_stale_writers(config.cache_dir)
    requeued = lifecycle.recover(keep_remote=config.queue_url is not None)
    if requeued:
        log.info("%d interrupted job(s) queued again", len(requeued))
    keep: set[str] = set()
    for job in store.files(DOWNLOADABLE):
        if cache.file_intact(job.output_path, job.size):
            keep.add(Path(job.output_path).name)
        else:
            log.warning("job %s: its output is missing or damaged; dropping it", job.id)
            drop(store, lifecycle, job)
    running = store.files([JobStatus.OPTIMIZING])  # a worker host's, kept by the requeue
    cache.remove_strays(config.cache_dir, keep, (job.output_path for job in running))
