"""Keeping the cache folder and the job list true to each other.

At start: interrupted jobs go back to the queue, partial and orphaned files go,
and a finished job whose file vanished is dropped. While running: the retention
sweep removes outputs after TIME_TO_KEEP_FILES, collected outputs after the grace
period, and old failed or cancelled records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import psutil

from ..config import Config
from ..media.ffmpeg import remove_quietly
from . import cache
from .models import DOWNLOADABLE, JobStatus
from .rows import FileRecord
from .store import JobStore

log = logging.getLogger(__name__)


def human_size(size: int) -> str:
    """Bytes in base-1024 units, as the original server shows them ("9.84 MB")."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def cache_size(cache_dir: Path) -> int:
    with os.scandir(cache_dir) as entries:
        return sum(e.stat().st_size for e in entries if e.is_file(follow_symlinks=False))


def file_intact(output_path: str, size: int) -> bool:
    try:
        return Path(output_path).stat().st_size == size
    except OSError:
        return False


def end_stale_writers(cache_dir: Path, grace: float = 3.0) -> list[int]:
    """End processes left by an earlier run (a crash) that still write a partial output
    into the cache folder: their work is lost anyway, and their load would hold new jobs."""
    folder = str(cache_dir.resolve()) + os.sep
    me = os.getpid()
    stale = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if proc.pid != me and any(a.startswith(folder) and a.endswith(cache.PART) for a in args):
            stale.append(proc)
    for proc in stale:
        log.warning("ending pid %d left by an earlier run: it writes into the cache", proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(stale, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return [p.pid for p in stale]


class Janitor:
    def __init__(
        self,
        store: JobStore,
        config: Config,
        clock: Callable[[], float],
        on_removed: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._on_removed = on_removed  # the scheduler: a device may be under its limit now

    def reconcile(self) -> None:
        """Make the store and the cache folder agree after a start (or a crash)."""
        end_stale_writers(self._config.cache_dir)
        requeued = self._store.requeue_interrupted(keep_remote=self._config.queue_url is not None)
        if requeued:
            log.info("%d interrupted job(s) queued again", len(requeued))
        keep: set[str] = set()
        for job in self._store.files(DOWNLOADABLE):
            if file_intact(job.output_path, job.size):
                keep.add(Path(job.output_path).name)
            else:
                log.warning("job %s: its output is missing or damaged; dropping it", job.id)
                self._drop(job)
        self._remove_strays(keep)

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
                self._drop(job)
                removed += 1
        if removed:
            self._on_removed()
        return removed

    def clear_cache(self) -> int:
        """Delete every output (running jobs were stopped first); returns jobs dropped."""
        finished = self._store.files(DOWNLOADABLE)
        for job in finished:
            self._drop(job)
        self._remove_strays(set())
        return len(finished)

    async def run_sweeps(self) -> None:
        while True:
            await asyncio.sleep(self._config.cleanup_interval)
            try:
                self.sweep()
            except Exception:  # the next sweep may succeed; the server keeps serving
                log.exception("retention sweep failed")

    def _drop(self, job: FileRecord) -> None:
        remove_quietly(Path(job.output_path))
        self._store.delete(job.id)

    def _remove_strays(self, keep: set[str]) -> None:
        running = self._store.files([JobStatus.OPTIMIZING])  # started since the caller looked
        cache.remove_strays(self._config.cache_dir, keep, (job.output_path for job in running))
