"""The server side of page sessions: the browser holds only a random id (HttpOnly,
SameSite=Strict); what it maps to stays here, in memory, until it expires or signs out.

Only signed-in sessions are kept (a visitor has none: the sign-in form needs no session), at
most ``per_user`` of each user's (signing in again drops that user's least recently used
one, never another user's) and ``MAX_SESSIONS`` in all (the least recently used goes)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage, Session

COOKIE = "ovs_session"
MAX_SESSIONS = 10_000  # the least recently used is forgotten first


class MemoryStorage(AbstractStorage):
    def __init__(
        self,
        ttl: float,
        per_user: int,
        path: str = "/",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(cookie_name=COOKIE, path=path, httponly=True, samesite="Strict")
        self._ttl = ttl
        self._per_user = per_user
        self._clock = clock
        self._data: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def load_session(self, request: web.Request) -> Session:
        key = self.load_cookie(request)
        entry = self._data.get(key) if key else None
        if key is None or entry is None or entry[1] <= self._clock():
            if key is not None:
                self._data.pop(key, None)
            return Session(None, data=None, new=True, max_age=None)
        self._data.move_to_end(key)
        return Session(key, data={"session": dict(entry[0])}, new=False, max_age=None)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        key, user = session.identity, session.get("user")
        if not isinstance(user, str):  # signed out (or never in): forget it here and there
            if key is not None:
                self._data.pop(key, None)
            self.save_cookie(response, "")
            return
        if key is None or session.new:  # a sign-in
            self._make_room(user)
            key = secrets.token_urlsafe(32)
            session.set_new_identity(key)
        self._data[key] = (dict(session), self._clock() + self._ttl)
        self._data.move_to_end(key)
        while len(self._data) > MAX_SESSIONS:
            self._data.popitem(last=False)
        # Secure when the browser came over TLS (directly or through a trusted proxy)
        params = self.cookie_params
        response.set_cookie(
            self.cookie_name,
            key,
            path=params["path"],
            httponly=params["httponly"],
            samesite=params["samesite"],
            secure=request.secure,
        )

    def _make_room(self, user: str) -> None:
        """Room for one more of ``user``'s sessions: their least recently used go first."""
        theirs = [key for key, (data, _) in self._data.items() if data.get("user") == user]
        for key in theirs[: max(len(theirs) - self._per_user + 1, 0)]:
            del self._data[key]

    def rotate(self, session: Session) -> None:
        """A sign-in gets a fresh id (no session fixation): the old one is dropped."""
        if session.identity is not None:
            self._data.pop(session.identity, None)
        session._identity = None
        session._new = True

    def forget(self, key: str | None) -> None:
        if key is not None:
            self._data.pop(key, None)

    def alive(self, key: str | None) -> bool:
        entry = self._data.get(key) if key else None
        return entry is not None and entry[1] > self._clock()


SESSIONS = web.AppKey("sessions", MemoryStorage)
