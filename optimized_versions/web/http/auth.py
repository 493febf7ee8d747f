"""Who is calling: the token from any of the forms clients send, checked with Jellyfin.

With ``JELLYFIN_URL`` set, Jellyfin's ``/Users/Me`` decides; good answers are cached
briefly under a SHA-256 of the token (the token itself is never kept or logged).
Without it, the server checks its own token list (standalone mode).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from aiohttp import web

from ...config import StaticToken
from ...errors import Unauthorized
from ...jellyfin.client import JellyfinClient
from ...jobs.models import Principal

log = logging.getLogger(__name__)

_MEDIABROWSER_TOKEN = re.compile(r'(?:^|[\s,])Token="([^"]*)"', re.IGNORECASE)
TOKEN_SHAPE = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII, no quotes or spaces
_QUERY_KEYS = ("api_key", "apikey")
CACHE_SIZE = 1024


def extract_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token from Authorization (bare, MediaBrowser or Bearer), X-Emby-Token,
    X-MediaBrowser-Token, or the api_key / ApiKey query parameter."""
    auth = headers.get("Authorization", "").strip()
    if auth:
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() in ("mediabrowser", "emby"):
            match = _MEDIABROWSER_TOKEN.search(rest)
            if match and match.group(1):
                return match.group(1)
        elif scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
        elif not rest:
            return auth
    for name in ("X-Emby-Token", "X-MediaBrowser-Token"):
        if value := headers.get(name, "").strip():
            return value
    for key, value in query.items():
        if key.lower() in _QUERY_KEYS and value:
            return value
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal: ...


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


class JellyfinAuth:
    """Jellyfin decides; answers are cached under the token's hash (good ones for ``ttl``,
    refusals for ``FAILURE_TTL``), and concurrent checks of one token share one call."""

    FAILURE_TTL = 10.0

    def __init__(self, client: JellyfinClient, ttl: float, clock: Callable[[], float]) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal | None, float]] = OrderedDict()
        self._asking: dict[str, asyncio.Task[Principal]] = {}

    async def authenticate(self, token: str) -> Principal:
        key = token_hash(token)
        hit = self._cache.get(key)
        if hit is not None and hit[1] > self._clock():
            if hit[0] is None:
                raise Unauthorized("Jellyfin did not accept the access token")
            return hit[0]
        task = self._asking.get(key)
        if task is None:
            task = self._asking[key] = asyncio.create_task(self._ask(key, token))
            task.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(task)  # a caller that hangs up leaves it to the others

    async def _ask(self, key: str, token: str) -> Principal:
        try:
            user = await self._client.users_me(token)
        except Unauthorized:
            self._remember(key, None, self.FAILURE_TTL)
            raise
        policy = user.get("Policy")
        if not isinstance(policy, dict):
            policy = {}
        principal = Principal(
            user_id=user["Id"],
            name=str(user.get("Name") or user["Id"]),
            is_admin=bool(policy.get("IsAdministrator", False)),
        )
        self._remember(key, principal, self._ttl)
        return principal

    def _remember(self, key: str, principal: Principal | None, ttl: float) -> None:
        self._cache[key] = (principal, self._clock() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


class StaticAuth:
    """Standalone mode: tokens from the configuration (and a generated admin token)."""

    def __init__(self, tokens: tuple[StaticToken, ...]) -> None:
        self._by_hash = {
            token_hash(t.token): Principal(user_id=t.name, name=t.name, is_admin=t.admin)
            for t in tokens
        }

    async def authenticate(self, token: str) -> Principal:
        key = token_hash(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, key):
                return principal
        raise Unauthorized("the access token is not known to this server")


def standalone_tokens(
    configured: tuple[StaticToken, ...], data_dir: Path
) -> tuple[StaticToken, ...]:
    """The configured tokens, or the admin token kept in the data directory (made once)."""
    if configured:
        return configured
    path = data_dir / "admin-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        log.warning("standalone mode: created an admin token in %s", path.resolve())
    else:
        log.warning("standalone mode: the admin token is in %s", path.resolve())
    return (StaticToken(token=path.read_text().strip(), name="admin", admin=True),)
