"""Job lists as sent, kept until one of their jobs changes: phones ask for the same list every
2 s, and while nothing runs it is the same bytes each time (a device's list can be a
megabyte). A list is keyed by the version of its device's last write (from the store's change feed,
``JobStore.subscribe``), so a running job's progress makes only its own device's lists stale; and
each job's JSON up to its item (its *head*) is kept until that job is written again, so a
list is made from the kept heads and the stored items (its ids and items are all it reads),
not job by job. The heads are made at start-up, before the first poll.

Bounded: lists over ``BODY`` bytes are not kept, all lists together at most ``TOTAL``, all
heads together at most ``HEADS`` (the least recently used go first)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from aiohttp import web

from ...jobs.models import JobStatus
from ...jobs.rows import COLUMNS_BRIEF, FIELDS, api_head, row_to_job
from ...jobs.store import JobStore

BODY = 4 * 1024 * 1024
TOTAL = 32 * 1024 * 1024
HEADS = 16 * 1024 * 1024
SLICE = 100  # heads made at start-up between two turns of the event loop (~1 ms)
_ID = FIELDS.index("id")
# what a device's list shows: not cancelled, not collected or dismissed
SHOWN = [s for s in JobStatus if s is not JobStatus.CANCELLED]


class Kept:
    """Bytes by key, each tagged with the version it was made at; at most ``total`` bytes in
    all (the least recently used go first)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._kept: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self.size = 0

    def get(self, key: Hashable, version: int) -> bytes | None:
        hit = self._kept.get(key)
        if hit is None or hit[0] != version:
            return None
        self._kept.move_to_end(key)
        return hit[1]

    def drop(self, key: Hashable) -> None:
        old = self._kept.pop(key, None)
        if old is not None:
            self.size -= len(old[1])

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        self.drop(key)
        self._kept[key] = (version, body)
        self.size += len(body)
        while self.size > self.total:
            _, (_, dropped) = self._kept.popitem(last=False)
            self.size -= len(dropped)


class Heads(Kept):
    """Each job's head, tagged with the version of the job's last write."""

    def __init__(self, total: int = HEADS) -> None:
        super().__init__(total)

    def make(self, row: tuple[Any, ...], written: int) -> bytes:
        """The head of a row of ``COLUMNS_RAW``, kept."""
        job_id, head = row[_ID], api_head(row_to_job(row, with_item=False))
        self.put(job_id, written, head)
        return head


class ListCache:
    def __init__(self, body: int = BODY, total: int = TOTAL, heads: int = HEADS) -> None:
        self._body = body
        self._lists = Kept(total)
        self.heads = Heads(heads)
        # the version of each job's and each client device's last write (absent: none in
        # this process), so that one job's progress makes only its own device's lists stale
        self.written: dict[str, int] = {}
        self.device_written: dict[str, int] = {}
        self.version = 0  # of the last write of any job

    def changed(self, job_id: str, device_id: str | None, version: int) -> None:
        """The store's change feed."""
        self.version = self.written[job_id] = version
        if device_id is not None:
            self.device_written[device_id] = version

    def get(self, key: Hashable, version: int) -> bytes | None:
        return self._lists.get(key, version)

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        if len(body) > self._body:
            self._lists.drop(key)  # (the one kept before is stale all the same)
        else:
            self._lists.put(key, version, body)

    async def warm(self, store: JobStore) -> None:
        """At start-up: the heads of what devices' lists show, newest first, SLICE at a
        time between other work, until half the room for heads is taken. Phones poll again
        as soon as the server is back; each first poll is then a join, not hundreds of jobs
        serialised while every other request waits (~10 ms a device)."""
        for page in store.pages_raw(statuses=SHOWN, hide_collected=True):
            read = self.version  # a job written since this page was read: not from it
            for start in range(0, len(page), SLICE):
                for row in page[start : start + SLICE]:
                    if (written := self.written.get(row[_ID], 0)) <= read:
                        self.heads.make(row, written)
                if self.heads.size > self.heads.total // 2:
                    return
                await asyncio.sleep(0)

    def parts(self, store: JobStore, **where: Any) -> Iterator[list[bytes]]:
        """The list's JSON in parts (to be joined), a page at a time, then its end. A page
        reads the ids and items only; the rows of jobs without a kept head, whole."""
        separator, written, heads = b"[", self.written.get, self.heads
        pages: Iterable[list[tuple[Any, ...]]] = store.pages_raw(columns=COLUMNS_BRIEF, **where)
        for page in pages:
            kept = [heads.get(row[0], written(row[0], 0)) for row in page]
            missing = [row[0] for row, head in zip(page, kept, strict=True) if head is None]
            rows = store.rows_raw(missing) if missing else {}
            out: list[bytes] = []
            for (job_id, item, _, _), head in zip(page, kept, strict=True):
                if head is None:
                    if (row := rows.get(job_id)) is None:
                        continue  # removed between the two reads (by another process)
                    head = heads.make(row, written(job_id, 0))
                out += (separator, head, item, b"}")
                separator = b","
            yield out
        yield [b"[]" if separator == b"[" else b"]"]

    def list_version(self, device_id: str | None) -> int:
        """What a list is kept by: its device's last write, or any write for a list of all."""
        return self.version if device_id is None else self.device_written.get(device_id, 0)


LISTS = web.AppKey("lists", ListCache)  # all-jobs answers until the store changes
