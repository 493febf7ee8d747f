"""Failed authentications per client address: after too many in a minute, answer 429 until
the minute is over, without asking Jellyfin (a token guesser must not drive Jellyfin).
Phones' tokens, worker tokens and the sign-in form count against the same limiter."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from ...errors import TooManyRequests

ADDRESSES = 4096  # addresses remembered at most (the oldest is forgotten first)


class FailureLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # start, count

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        if not self._limit or address not in self._failures:
            return None
        start, count = self._failures[address]
        left = start + self._window - self._clock()
        if left <= 0:
            del self._failures[address]
            return None
        return left if count >= self._limit else None

    def failed(self, address: str) -> None:
        now = self._clock()
        start, count = self._failures.pop(address, (now, 0))
        if now - start >= self._window:
            start, count = now, 0
        self._failures[address] = (start, count + 1)
        while len(self._failures) > ADDRESSES:
            self._failures.popitem(last=False)


LIMITER = web.AppKey("limiter", FailureLimiter)


def _address(request: web.Request) -> str:
    return request.remote or "unknown"  # (the client's, behind a trusted proxy: proxies.py)


def check_sign_ins(request: web.Request) -> None:
    """429 for an address that failed to sign in too often in the last minute."""
    if (wait := request.app[LIMITER].retry_after(_address(request))) is not None:
        raise TooManyRequests(
            f"too many failed sign-ins from this address: try again in {wait:.0f} s", wait
        )


def sign_in_failed(request: web.Request) -> None:
    """Count a failed sign-in against the caller's address."""
    request.app[LIMITER].failed(_address(request))
