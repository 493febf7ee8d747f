"""What the server published, who holds it, and the rules users saved: ``publish.sqlite3``
in the data folder.

The ledger is the only licence to delete: a file is removed only when a row here names its
path, its size and SHA-256, and the file still has them. A row per item and profile also
says why nothing was published (refused, failed), for the pages.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    item_id TEXT NOT NULL,          -- the original's Jellyfin id
    profile TEXT NOT NULL,
    name TEXT NOT NULL,             -- the item's name, for the pages
    state TEXT NOT NULL,            -- writing, published, refused, failed
    path TEXT,                      -- the file written (this host's path)
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    method TEXT,                    -- name (a version by file name) or merge (MergeVersions)
    version_id TEXT,                -- the version's id in Jellyfin once it listed it
    reason TEXT,                    -- why not, or what happened
    job_id TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (item_id, profile)
);
CREATE TABLE IF NOT EXISTS holds (
    rule TEXT NOT NULL,             -- the rule's key (file:N or page:N)
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    name TEXT NOT NULL,
    since REAL NOT NULL,
    watched_at REAL,                -- first seen watched by the rule's user
    PRIMARY KEY (rule, item_id, profile)
);
CREATE TABLE IF NOT EXISTS rules (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,             -- the Jellyfin user's name
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    library TEXT,
    playlist TEXT,
    profile TEXT,
    keep TEXT NOT NULL,
    created_by TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Published:
    item_id: str
    profile: str
    name: str
    state: str
    path: str | None
    size: int
    sha256: str | None
    method: str | None
    version_id: str | None
    reason: str | None
    job_id: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class Hold:
    rule: str
    user_id: str
    item_id: str
    profile: str
    name: str
    since: float
    watched_at: float | None


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- published ---
    def get(self, item_id: str, profile: str) -> Published | None:
        rows = self._rows("SELECT * FROM published WHERE item_id=? AND profile=?", item_id, profile)
        return Published(*rows[0]) if rows else None

    def all(self) -> list[Published]:
        return [Published(*r) for r in self._rows("SELECT * FROM published ORDER BY name")]

    def note(self, item_id: str, profile: str, name: str, now: float, **fields: Any) -> None:
        """Write a row's fields (made when missing); ``state`` always."""
        row = {"name": name, "updated_at": now, **fields}
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{k}=excluded.{k}" for k in row)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO published (item_id, profile, {names}) VALUES (?, ?, {marks})"
                f" ON CONFLICT (item_id, profile) DO UPDATE SET {updates}",
                (item_id, profile, *row.values()),
            )

    def forget(self, item_id: str, profile: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM published WHERE item_id=? AND profile=?", (item_id, profile))

    def published_bytes(self) -> int:
        rows = self._rows("SELECT COALESCE(SUM(size), 0) FROM published WHERE path IS NOT NULL")
        return int(rows[0][0])

    # --- holds ---
    def holds(self) -> list[Hold]:
        return [Hold(*r) for r in self._rows("SELECT * FROM holds ORDER BY since")]

    def hold(self, hold: Hold) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO holds VALUES (?, ?, ?, ?, ?, ?, ?)",
                (hold.rule, hold.user_id, hold.item_id, hold.profile, hold.name, hold.since, None),
            )

    def watched(self, hold: Hold, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE holds SET watched_at=? WHERE rule=? AND item_id=? AND profile=?"
                " AND watched_at IS NULL",
                (now, hold.rule, hold.item_id, hold.profile),
            )

    def release(self, hold: Hold) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM holds WHERE rule=? AND item_id=? AND profile=?",
                (hold.rule, hold.item_id, hold.profile),
            )

    # --- the Rules page's rules ---
    def rules(self) -> list[tuple[Any, ...]]:
        return self._rows(
            "SELECT id, user, kind, count, library, playlist, profile, keep, created_by"
            " FROM rules ORDER BY id"
        )

    def add_rule(self, created_by: str, **rule: Any) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO rules (user, kind, count, library, playlist, profile, keep,"
                " created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rule["user"],
                    rule["kind"],
                    rule["count"],
                    rule.get("library"),
                    rule.get("playlist"),
                    rule.get("profile"),
                    str(rule["keep"]),
                    created_by,
                ),
            )
            return int(cursor.lastrowid or 0)

    def delete_rule(self, rule_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM rules WHERE id=?", (rule_id,))
