"""Which worker hosts an admin drained: they take no new job; their running jobs finish.

Kept in ``DATA_DIR/workers.sqlite3`` beside the worker tokens, so a drain survives a restart
of the server: an admin drains a host to work on it, and a server restart meanwhile must not
send it jobs again. Resume is the only way out (revoking the host's token does not resume it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .tokens import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS drained_nodes (
    name TEXT PRIMARY KEY,
    since REAL NOT NULL
)
"""


class Drains:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._db = connect(path, SCHEMA)

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
