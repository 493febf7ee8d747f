"""How a job is laid out in SQLite: the schema, its columns, and the conversions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InsufficientStorage, ServiceError, Unavailable
from .models import Job, JobStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    device_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    item TEXT NOT NULL,
    input_url TEXT NOT NULL,
    file_extension TEXT,
    profile TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    output_path TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    speed REAL,
    size INTEGER NOT NULL DEFAULT 0,
    checksum TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    collected_at REAL,
    backend TEXT,
    encoder TEXT,
    decoder TEXT,
    fallbacks TEXT NOT NULL DEFAULT '[]',
    retries INTEGER NOT NULL DEFAULT 0,
    not_before REAL,
    wait_reason TEXT,
    promoted_at REAL,
    pinned_device TEXT,
    tracks TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_device ON jobs (device_id, status);
-- a device's list newest first, read in order (no sort of megabytes of items)
CREATE INDEX IF NOT EXISTS jobs_by_device_time ON jobs (device_id, created_at);
CREATE TABLE IF NOT EXISTS job_sources (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    url TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS health_probe (pad BLOB);
"""

MUTABLE = (
    "progress",
    "speed",
    "size",
    "checksum",
    "error",
    "started_at",
    "finished_at",
    "collected_at",
    "backend",
    "encoder",
    "decoder",
    "fallbacks",
    "retries",
    "not_before",
    "wait_reason",
    "promoted_at",
    "pinned_device",
    "tracks",
    "plan",
    "command",
    "node",
    "output_path",  # a record that waited on another's run takes that run's output
    "maker_id",
    "quality",
)
# columns added after the first release, with their declarations, for older databases
ADDED = {
    "encoder": "TEXT",
    "decoder": "TEXT",
    "fallbacks": "TEXT NOT NULL DEFAULT '[]'",
    "retries": "INTEGER NOT NULL DEFAULT 0",
    "not_before": "REAL",
    "wait_reason": "TEXT",
    "promoted_at": "REAL",
    "pinned_device": "TEXT",
    "tracks": "TEXT NOT NULL DEFAULT '[]'",
    "plan": "TEXT",
    "command": "TEXT NOT NULL DEFAULT '[]'",
    "node": "TEXT",
    "output_key": "TEXT",
    "maker_id": "TEXT",
    "quality": "TEXT",  # JSON, NULL for none
}
# indexes on added columns: made after the columns are (an older database lacks them)
ADDED_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_output_key ON jobs (output_key, status);
CREATE INDEX IF NOT EXISTS jobs_by_maker ON jobs (maker_id);
CREATE INDEX IF NOT EXISTS jobs_by_output_path ON jobs (output_path);
"""
JSON_FIELDS = ("item", "fallbacks", "tracks", "command")
FIELDS = (
    "id",
    "owner_id",
    "owner_name",
    "device_id",
    "item_id",
    "item",
    "input_url",
    "file_extension",
    "profile",
    "status",
    "created_at",
    "output_key",
    *MUTABLE,
)
COLUMNS = ", ".join(FIELDS)
# the same columns with an empty item: what the scheduler reads of every waiting job
COLUMNS_NO_ITEM = ", ".join("'{}'" if name == "item" else name for name in FIELDS)
# ... and with the item as its stored bytes: a list splices it in as it is
COLUMNS_RAW = ", ".join("CAST(item AS BLOB)" if name == "item" else name for name in FIELDS)
COLUMNS_BRIEF = "id, CAST(item AS BLOB)"  # ... or only the id and the item


def row_to_job(row: Sequence[Any], *, with_item: bool = True) -> Job:
    """A job from a row of ``COLUMNS``; without its item (left empty) when the caller
    writes the stored item text out as it is (``api_head``)."""
    values = dict(zip(FIELDS, row[: len(FIELDS)], strict=True))
    values["item"] = json.loads(values["item"]) if with_item else {}
    values["fallbacks"] = _list(values["fallbacks"])
    values["tracks"] = _list(values["tracks"])
    values["command"] = _list(values["command"])
    values["quality"] = None if values["quality"] is None else json.loads(values["quality"])
    values["status"] = JobStatus(values["status"])
    return Job(**values)


def _list(text: str) -> list[Any]:
    return [] if text == "[]" else list(json.loads(text))  # most jobs have none: no parse


def api_head(job: Job) -> bytes:
    """The job object as JSON up to its item: a list writes ``head + item + b"}"`` with the
    stored item spliced in unparsed, never building thousands of item objects."""
    body = job.to_api()
    del body["item"]
    return f'{json.dumps(body)[:-1]}, "item": '.encode()


def column(name: str, value: Any) -> Any:
    if name == "quality":
        return None if value is None else json.dumps(value, separators=(",", ":"))
    if name in JSON_FIELDS:
        return json.dumps(value, separators=(",", ":"))
    return str(value) if name == "status" else value


def filters(
    owner_id: str | None,
    device_id: str | None,
    statuses: Iterable[JobStatus] | None,
    hide_collected: bool = False,
) -> tuple[str, list[str]]:
    where, args = (["collected_at IS NULL"] if hide_collected else []), []
    if owner_id is not None:
        where.append("owner_id = ?")
        args.append(owner_id)
    if device_id is not None:
        where.append("device_id = ?")
        args.append(device_id)
    if statuses is not None:
        wanted = [str(s) for s in statuses]
        where.append(f"status IN ({', '.join('?' * len(wanted))})")
        args.extend(wanted)
    return (" WHERE " + " AND ".join(where) if where else ""), args


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What retention and reconciliation need of a job: no item, so thousands stay small."""

    id: str
    status: JobStatus
    output_path: str
    size: int
    created_at: float
    finished_at: float | None
    collected_at: float | None


def storage_problem(exc: sqlite3.Error) -> ServiceError | None:
    """A failed write that is the data folder's fault (full, read-only, gone), as the error
    a client gets; None for anything else (a bug)."""
    text = str(exc).lower()
    if "full" in text:
        return InsufficientStorage("the server's data folder is full: no job can be saved now")
    if any(word in text for word in ("readonly", "read-only", "unable to open", "i/o error")):
        return Unavailable("the server's data folder cannot be written to now")
    return None
