"""Page sessions: a random id in an HttpOnly, SameSite=Strict cookie, the data kept here,
in memory (aiohttp-session with a server-side store). A Jellyfin token lives only as long
as its session, is never written to a page, and is checked again with Jellyfin (through the
authenticator's short cache) on every page: a token revoked in Jellyfin ends the session.

Sessions do not survive a restart: signing in again is cheap, and nothing on disk then holds
a user's Jellyfin token for the pages.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from aiohttp_session import get_session

from ...errors import ServiceError
from ...jobs.models import Principal
from ..http.auth import AUTHENTICATOR
from .session_store import SESSIONS, MemoryStorage


async def csrf_token(request: web.Request) -> str:
    """The session's anti-forgery token (made at sign-in); every form but sign-in's carries
    it (that one's is login_token.py's, as a visitor has no session)."""
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


class CsrfRejected(ServiceError):
    status = 403


async def check_csrf(request: web.Request) -> dict[str, str]:
    """The posted form, when its token matches the session's; 403 otherwise."""
    form = await request.post()
    session = await get_session(request)
    expected = session.get("csrf")
    sent = form.get("csrf")
    if not isinstance(expected, str) or not isinstance(sent, str):
        raise CsrfRejected("the form is missing its anti-forgery token: reload the page")
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRejected("the form's anti-forgery token does not match: reload the page")
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def signed_in(request: web.Request) -> Principal | None:
    """The session's user, checked again with the authenticator; None when signed out."""
    session = await get_session(request)
    token = session.get("token")
    if not isinstance(token, str):
        return None
    try:
        return await request.app[AUTHENTICATOR].authenticate(token)
    except ServiceError as exc:
        if exc.status == 401:  # revoked or expired: the session ends with it (here too,
            request.app[SESSIONS].forget(session.identity)  # where nothing saves it: /live)
            session.invalidate()
            return None
        raise


async def start_session(
    request: web.Request, storage: MemoryStorage, token: str, principal: Principal
) -> None:
    """Signed in: a new session (the only way one is made), with its own form token."""
    session = await get_session(request)
    storage.rotate(session)
    session.clear()
    session["token"] = token
    session["user"] = principal.user_id
    session["csrf"] = secrets.token_urlsafe(24)
