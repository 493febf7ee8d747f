"""The job store's reads (``JobStore`` extends ``JobReads``): jobs by id, owner, device or
status, the waiting jobs, the list pages the list cache splices, counts and statistics.
Plain queries on the one connection, made from the event loop thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from .models import ACTIVE, DOWNLOADABLE, WAITING, Job, JobStatus
from .rows import COLUMNS, COLUMNS_NO_ITEM, COLUMNS_RAW, FileRecord, filters, row_to_job

PAGE = 500  # rows per query when streaming a long list


class JobReads:
    _db: sqlite3.Connection

    def get(self, job_id: str) -> Job | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row_to_job(row) if row else None

    def source_url(self, job_id: str) -> str | None:
        row = self._db.execute("SELECT url FROM job_sources WHERE job_id = ?", (job_id,)).fetchone()
        return str(row[0]) if row else None

    def jobs(
        self,
        *,
        owner_id: str | None = None,
        device_id: str | None = None,
        statuses: Iterable[JobStatus] | None = None,
    ) -> list[Job]:
        """Jobs newest first, items parsed (for the few callers that need whole jobs)."""
        where, args = filters(owner_id, device_id, statuses)
        sql = f"SELECT {COLUMNS} FROM jobs{where} ORDER BY created_at DESC, rowid DESC"
        return [row_to_job(row) for row in self._db.execute(sql, args)]

    def waiting(self) -> list[Job]:
        """Queued and held jobs, oldest first, without their items (which can be large):
        the scheduler reads them on every pass and never needs the item."""
        sql = (  # a record that waits on another's run is never dispatched
            f"SELECT {COLUMNS_NO_ITEM} FROM jobs WHERE status IN (?, ?) AND maker_id IS NULL"
            " ORDER BY created_at ASC, rowid ASC"
        )
        rows = self._db.execute(sql, (str(JobStatus.QUEUED), str(JobStatus.PENDING_DOWNLOADS)))
        return [row_to_job(row) for row in rows]

    def pages_raw(
        self,
        *,
        owner_id: str | None = None,
        device_id: str | None = None,
        statuses: Iterable[JobStatus] | None = None,
        hide_collected: bool = False,
        columns: str = COLUMNS_RAW,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Rows of ``columns`` (all: ``rows.row_to_job`` reads them; the item as its stored
        JSON bytes, spliced into a list as it is) newest first, a page at a time. Each page is
        its own query, so no cursor stays open while the caller awaits between pages."""
        where, args = filters(owner_id, device_id, statuses, hide_collected)
        where += " AND " if where else " WHERE "
        last: tuple[float, int] = (float("inf"), 0)
        while True:
            rows = self._db.execute(
                f"SELECT {columns}, created_at, rowid FROM jobs{where}(created_at, rowid) < (?, ?)"
                f" ORDER BY created_at DESC, rowid DESC LIMIT {PAGE}",
                [*args, *last],
            ).fetchall()
            if rows:
                yield rows
            if len(rows) < PAGE:  # the last page (another query would read the rows again)
                return
            last = (rows[-1][-2], rows[-1][-1])

    def rows_raw(self, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        """Rows of ``COLUMNS_RAW`` by job id (at most ``PAGE`` ids)."""
        sql = f"SELECT {COLUMNS_RAW} FROM jobs WHERE id IN ({', '.join('?' * len(ids))})"
        return {row[0]: row for row in self._db.execute(sql, ids)}

    def files(self, statuses: Iterable[JobStatus]) -> list[FileRecord]:
        wanted = [str(s) for s in statuses]
        rows = self._db.execute(
            "SELECT id, status, output_path, size, created_at, finished_at, collected_at"
            f" FROM jobs WHERE status IN ({', '.join('?' * len(wanted))})",
            wanted,
        )
        return [FileRecord(r[0], JobStatus(r[1]), *r[2:]) for r in rows]

    def find_duplicate(
        self,
        owner_id: str,
        device_id: str,
        item_id: str,
        profile: str,
        statuses: Iterable[JobStatus],
    ) -> Job | None:
        wanted = [str(s) for s in statuses]
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM jobs WHERE owner_id = ? AND device_id = ? AND item_id = ?"
            f" AND profile = ? AND status IN ({', '.join('?' * len(wanted))})"
            " ORDER BY created_at DESC LIMIT 1",
            [owner_id, device_id, item_id, profile, *wanted],
        ).fetchone()
        return row_to_job(row) if row else None

    # -- one output for every record of its key (jobs/outputs.py) ----------------------

    def _by_key(
        self, key: str, statuses: Iterable[JobStatus], owner_id: str | None, extra: str, order: str
    ) -> list[Job]:
        wanted = [str(s) for s in statuses]
        sql = (
            f"SELECT {COLUMNS} FROM jobs WHERE output_key = ?"
            f" AND status IN ({', '.join('?' * len(wanted))}){extra}"
        )
        args: list[Any] = [key, *wanted]
        if owner_id is not None:
            sql += " AND owner_id = ?"
            args.append(owner_id)
        return [row_to_job(r) for r in self._db.execute(f"{sql} ORDER BY {order}", args)]

    def copies(self, key: str, owner_id: str | None = None) -> list[Job]:
        """Finished records of ``key`` (``owner_id``'s only, when given), newest first."""
        return self._by_key(key, DOWNLOADABLE, owner_id, "", "created_at DESC, rowid DESC")

    def maker(self, key: str, owner_id: str | None = None) -> Job | None:
        """The record whose run makes ``key``'s output now (``owner_id``'s, when given)."""
        found = self._by_key(
            key, ACTIVE, owner_id, " AND maker_id IS NULL", "created_at ASC, rowid ASC"
        )
        return found[0] if found else None

    def others_have(self, key: str, owner_id: str) -> bool:
        """Whether another user's record makes or holds ``key``'s output."""
        wanted = [str(s) for s in ACTIVE | DOWNLOADABLE]
        row = self._db.execute(
            f"SELECT 1 FROM jobs WHERE output_key = ? AND owner_id != ?"
            f" AND status IN ({', '.join('?' * len(wanted))}) LIMIT 1",
            [key, owner_id, *wanted],
        ).fetchone()
        return row is not None

    def followers(self, maker_id: str | None = None) -> list[Job]:
        """Waiting records that wait on ``maker_id``'s run (on any, when None), oldest
        first."""
        wanted = [str(s) for s in WAITING]
        sql = f"SELECT {COLUMNS} FROM jobs WHERE status IN (?, ?) AND "
        sql += "maker_id IS NOT NULL" if maker_id is None else "maker_id = ?"
        args = [*wanted] if maker_id is None else [*wanted, maker_id]
        return [
            row_to_job(r)
            for r in self._db.execute(f"{sql} ORDER BY created_at ASC, rowid ASC", args)
        ]

    def holds_output(self, output_path: str, except_id: str) -> bool:
        """Whether a record other than ``except_id`` holds (or makes) ``output_path``."""
        wanted = [str(s) for s in ACTIVE | DOWNLOADABLE]
        row = self._db.execute(
            "SELECT 1 FROM jobs WHERE output_path = ? AND id != ?"
            f" AND status IN ({', '.join('?' * len(wanted))}) LIMIT 1",
            [output_path, except_id, *wanted],
        ).fetchone()
        return row is not None

    def count(self, status: JobStatus, device_id: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM jobs WHERE status = ?", [str(status)]
        if device_id is not None:
            sql += " AND device_id = ?"
            args.append(device_id)
        return int(self._db.execute(sql, args).fetchone()[0])

    def count_waiting(self, owner_id: str) -> int:
        """A user's jobs that wait to run (queued or held by the downloads limit)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM jobs WHERE owner_id = ? AND status IN (?, ?)",
            (owner_id, str(JobStatus.QUEUED), str(JobStatus.PENDING_DOWNLOADS)),
        ).fetchone()
        return int(row[0])

    def statistics(self) -> dict[str, int]:
        counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        devices = self._db.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
        return {
            "totalTranscodes": int(counters.get("total_transcodes", 0)),
            "completedJobs": int(counters.get("completed_jobs", 0)),
            "uniqueDevices": int(devices),
        }
