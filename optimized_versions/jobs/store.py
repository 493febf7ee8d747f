"""The job store: SQLite (standard library, WAL) in the data directory: its writes and its
change feed here, its reads in ``reads.py``.

Every status change goes through ``JobStore.transition``, which checks that the
change is allowed, writes it, and logs it as one line. Calls are short local
writes, made from the event loop thread.

The URL a job fetches its source from holds the user's credential. The job row
keeps only the redacted form; the real one sits in ``job_sources`` while the job
may still run (so a restart can run it again) and is deleted when the job ends.
``secure_delete`` makes SQLite overwrite the freed bytes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .models import ACTIVE, WAITING, Job, JobStatus, StoreObserver
from .reads import JobReads
from .rows import (
    ADDED,
    ADDED_INDEXES,
    COLUMNS,
    FIELDS,
    MUTABLE,
    SCHEMA,
    column,
)

log = logging.getLogger(__name__)

S = JobStatus
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.OPTIMIZING, S.PENDING_DOWNLOADS, S.CANCELLED, S.FAILED}),
    S.PENDING_DOWNLOADS: frozenset({S.QUEUED, S.OPTIMIZING, S.CANCELLED, S.FAILED}),
    S.OPTIMIZING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.COMPLETED: frozenset({S.READY_FOR_REMOVAL}),
    S.READY_FOR_REMOVAL: frozenset({S.COMPLETED}),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A status change the job's life cycle does not allow: a bug, not bad input."""


class JobStore(JobReads):
    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.version = 0  # the change feed's number: changes with every write
        self.observers: list[StoreObserver] = []  # told of status changes, holds, progress
        self._feed: list[Callable[[str, str | None, int], None]] = []
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, declaration in ADDED.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
        self._db.executescript(ADDED_INDEXES)

    def close(self) -> None:
        self._db.close()

    def check_writable(self) -> None:
        """Raise sqlite3.Error unless the database takes a write now (health check): a
        committed write that needs fresh pages as a new job's may (a lock alone needs no
        room), removed again in the same transaction."""
        (page,) = self._db.execute("PRAGMA page_size").fetchone()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO health_probe VALUES (zeroblob(?))", (2 * page,))
            self._db.execute("DELETE FROM health_probe")

    # -- creating and reading ----------------------------------------------------------

    def subscribe(self, listener: Callable[[str, str | None, int], None]) -> None:
        """The change feed: ``listener(job id, its client device, version)`` after each
        write (the device is None when the job is removed and its device unknown)."""
        self._feed.append(listener)

    def _touch(self, job: Job) -> None:
        self._written(job.id, job.device_id)

    def _written(self, job_id: str, device_id: str | None) -> None:
        self.version += 1
        for listener in self._feed:
            listener(job_id, device_id, self.version)

    def add(self, job: Job, source_url: str | None) -> None:
        """A new record: waiting (with its source), or already completed (a copy of an
        output another record has: no source kept)."""
        self._touch(job)
        values = [column(name, getattr(job, name)) for name in FIELDS]
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})", values
            )
            if job.status in ACTIVE:
                assert source_url is not None, "a job that may run needs its source"
                self._db.execute("INSERT INTO job_sources VALUES (?, ?)", (job.id, source_url))
            elif job.status is JobStatus.COMPLETED:
                self._bump("completed_jobs")
            self._bump("total_transcodes")
            self._db.execute("INSERT OR IGNORE INTO devices VALUES (?)", (job.device_id,))
        log.info(
            "job %s created: %s for %s on device %s (%s)",
            job.id,
            job.item_id,
            job.owner_name,
            job.device_id,
            job.profile,
        )

    # -- changing ----------------------------------------------------------------------

    def transition(self, job: Job, status: JobStatus, **changes: Any) -> Job:
        """Move a job to ``status``, writing ``changes`` with it; logs one line."""
        self._touch(job)
        # waiting -> completed: only a record that waits on another's run of its output
        shared = status is S.COMPLETED and job.status in WAITING and job.maker_id is not None
        if status not in ALLOWED[job.status] and not shared:
            raise InvalidTransition(f"job {job.id}: {job.status} -> {status} is not allowed")
        if unknown := set(changes) - set(MUTABLE):
            raise AttributeError(f"job fields {sorted(unknown)} cannot be changed")
        previous = job.status
        fields = {name: changes.get(name, getattr(job, name)) for name in MUTABLE}
        assignments = ", ".join(f"{name} = ?" for name in ("status", *MUTABLE))
        values = [str(status), *(column(name, value) for name, value in fields.items())]
        with self._db:
            self._db.execute("BEGIN")
            cursor = self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?",
                [*values, job.id, str(previous)],
            )
            if cursor.rowcount != 1:
                raise InvalidTransition(f"job {job.id} was no longer {previous}")
            ended = status not in ACTIVE
            if ended:
                self._db.execute("DELETE FROM job_sources WHERE job_id = ?", (job.id,))
            if status is JobStatus.COMPLETED and previous in ACTIVE:
                self._bump("completed_jobs")
        if ended:  # the credential must not linger in the write-ahead log either
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for name, value in changes.items():
            setattr(job, name, value)
        job.status = status
        detail = f" ({job.error})" if status is JobStatus.FAILED and job.error else ""
        log.info("job %s: %s -> %s%s", job.id, previous, status, detail)
        for observer in self.observers:
            observer.changed(job, previous)
        return job

    def note_wait(self, job: Job, reason: str, label: str) -> None:
        """Why a waiting job waits (shown in job-status; ``label``: its class, for the
        metrics); not a status change."""
        self._touch(job)
        self._db.execute(
            "UPDATE jobs SET wait_reason = ? WHERE id = ? AND status IN (?, ?)",
            (reason, job.id, str(JobStatus.QUEUED), str(JobStatus.PENDING_DOWNLOADS)),
        )
        job.wait_reason = reason
        for observer in self.observers:
            observer.waited(job, label)

    def dismiss(self, job: Job) -> None:
        """The user dismissed a failed job: it leaves the device's list, keeps its error."""
        self._touch(job)
        if job.collected_at is None:
            job.collected_at = self._clock()
            self._db.execute(
                "UPDATE jobs SET collected_at = ? WHERE id = ? AND status = ?",
                (job.collected_at, job.id, str(JobStatus.FAILED)),
            )
            log.info("job %s: failed job dismissed", job.id)

    def wait_on(self, job: Job, maker_id: str | None, wait_reason: str | None) -> None:
        """A waiting record waits on another run (``maker_id``), or on none: then it is a
        job the scheduler runs. Not a status change."""
        self._touch(job)
        self._db.execute(
            "UPDATE jobs SET maker_id = ?, wait_reason = ? WHERE id = ?",
            (maker_id, wait_reason, job.id),
        )
        job.maker_id, job.wait_reason = maker_id, wait_reason
        log.info("job %s: waits on %s", job.id, maker_id or "its own run")

    def promote(self, job: Job) -> None:
        """start-job: the job goes first in the queue (any back-off is forgiven)."""
        self._touch(job)
        job.promoted_at, job.not_before = self._clock(), None
        self._db.execute(
            "UPDATE jobs SET promoted_at = ?, not_before = NULL WHERE id = ?",
            (job.promoted_at, job.id),
        )
        log.info("job %s: start requested, first in the queue", job.id)

    def save_progress(self, job: Job, frames: int = 0) -> None:
        """Best effort: a full data folder must not stop a running transcode. ``frames``:
        video frames written since the last report (observers count them)."""
        self._touch(job)
        for observer in self.observers:
            observer.progressed(job, frames)
        try:
            self._db.execute(
                "UPDATE jobs SET progress = ?, speed = ?, size = ?, plan = ? WHERE id = ?",
                (job.progress, job.speed, job.size, job.plan, job.id),
            )
        except sqlite3.OperationalError as exc:
            log.debug("job %s: progress not saved: %s", job.id, exc)

    def delete(self, job_id: str) -> None:
        row = self._db.execute("SELECT device_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        self._written(job_id, row[0] if row is not None else None)
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        log.info("job %s removed from the store", job_id)

    def _bump(self, counter: str) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1",
            (counter,),
        )
