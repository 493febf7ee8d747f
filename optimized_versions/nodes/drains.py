"""Which worker hosts an admin drained: they take no new job; their running jobs finish.

Kept in ``DATA_DIR/workers.sqlite3`` beside the worker tokens, so a drain survives a restart
of the server: an admin drains a host to work on it, and a server restart meanwhile must not
send it jobs again. Resume is the only way out (revoking the host's token does not resume it).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS drained_nodes (
    name TEXT PRIMARY KEY,
    since REAL NOT NULL
)
"""


class Drains:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def names(self) -> set[str]:
        return {str(row[0]) for row in self._db.execute("SELECT name FROM drained_nodes")}

    def set(self, name: str, draining: bool) -> None:
        if draining:
            self._db.execute(
                "INSERT OR IGNORE INTO drained_nodes (name, since) VALUES (?, ?)",
                (name, self._clock()),
            )
        else:
            self._db.execute("DELETE FROM drained_nodes WHERE name = ?", (name,))
