"""Worker tokens: one per worker host, made by an admin, revocable, kept as SHA-256 hashes.

A token is 32 random bytes, so one SHA-256 at rest is enough (there is nothing to guess,
no password to stretch); the plain token is shown once, when it is made. The table lives in
``DATA_DIR/workers.sqlite3``, beside the job store and apart from it: the CLI writes it
while the server runs (WAL), and every check reads it, so a revocation holds at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOKENS_FILE = "workers.sqlite3"  # in DATA_DIR
PREFIX = "ovsw_"  # a worker token is told apart from a Jellyfin token at a glance
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED = frozenset({"local", "none"})  # /metrics' node label: this server, never ran
SEEN_EVERY = 60.0  # seconds between writes of a token's last use
SCHEMA = """
CREATE TABLE IF NOT EXISTS worker_tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
)
"""


class TokenError(ValueError):
    """A name that is malformed, taken, or unknown."""


@dataclass(frozen=True, slots=True)
class WorkerToken:
    name: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """``DATA_DIR/workers.sqlite3`` (tokens, drains): WAL, so that the CLI writes while the
    server reads; a writer waits for another rather than failing."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute(schema)
    return db


class WorkerTokens:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._db = connect(path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, name: str) -> str:
        """A new token for ``name`` (shown once); a revoked name may be given a new one."""
        if not NAME.match(name):
            raise TokenError(f"worker name {name!r}: use letters, digits, '.', '_' or '-'")
        if name.lower() in RESERVED:
            raise TokenError(f"worker name {name!r} is reserved (/metrics labels this server so)")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT revoked_at FROM worker_tokens WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] is None:
                raise TokenError(f"worker {name!r} already has a token: revoke it first")
            self._db.execute(
                "INSERT OR REPLACE INTO worker_tokens (name, hash, created_at) VALUES (?, ?, ?)",
                (name, _hash(token), self._clock()),
            )
        return token

    def revoke(self, name: str) -> None:
        cursor = self._db.execute(
            "UPDATE worker_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (self._clock(), name),
        )
        if cursor.rowcount == 0:
            raise TokenError(f"no active token for worker {name!r}")

    def all(self) -> list[WorkerToken]:
        rows = self._db.execute(
            "SELECT name, created_at, revoked_at, last_used_at FROM worker_tokens ORDER BY name"
        )
        return [WorkerToken(*row) for row in rows]

    def check(self, token: str) -> str | None:
        """The worker's name for a valid, unrevoked token; None otherwise."""
        if not token.startswith(PREFIX):
            return None
        row = self._db.execute(
            "SELECT name, last_used_at FROM worker_tokens WHERE hash = ? AND revoked_at IS NULL",
            (_hash(token),),
        ).fetchone()
        if row is None:
            return None
        name, seen = row
        now = self._clock()
        if seen is None or now - seen >= SEEN_EVERY:
            self._db.execute(
                "UPDATE worker_tokens SET last_used_at = ? WHERE name = ?", (now, name)
            )
        return str(name)
