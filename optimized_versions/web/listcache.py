"""Job lists as sent, kept until the store changes: phones ask for the same list every 2 s,
and while nothing runs it is the same bytes each time (a device's list can be a megabyte).
Bounded: lists over ``BODY`` bytes are not kept, all lists together at most ``TOTAL``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

BODY = 4 * 1024 * 1024
TOTAL = 32 * 1024 * 1024


class ListCache:
    def __init__(self, body: int = BODY, total: int = TOTAL) -> None:
        self._body, self._total = body, total
        self._lists: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._size = 0

    def get(self, key: Hashable, version: int) -> bytes | None:
        hit = self._lists.get(key)
        if hit is None or hit[0] != version:
            return None
        self._lists.move_to_end(key)
        return hit[1]

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        old = self._lists.pop(key, None)
        if old is not None:
            self._size -= len(old[1])
        if len(body) > self._body:
            return
        self._lists[key] = (version, body)
        self._size += len(body)
        while self._size > self._total:
            _, (_, dropped) = self._lists.popitem(last=False)
            self._size -= len(dropped)
