"""The sign-in form's anti-forgery token, without a server-side session (a visitor costs the
server nothing until they sign in): a random value in an HttpOnly, SameSite=Strict cookie,
and in the form an HMAC of that value under a key made at start. A post whose token is not
its own cookie's (another browser's, no cookie, a form from before a restart) is refused, as
is one a browser says came from another origin (``Sec-Fetch-Site``: a page on another port
of this host can set cookies here, but cannot post as this origin)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from aiohttp import web

from .sessions import CsrfRejected

COOKIE = "ovs_login"
_VALUE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # what secrets.token_urlsafe(24) makes


class LoginTokens:
    def __init__(self, path: str) -> None:
        self._key = secrets.token_bytes(32)
        self._path = path

    def _sign(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def form_token(self, request: web.Request, response: web.StreamResponse) -> str:
        """The token for the form in ``response``; the cookie it needs is set on it."""
        value = request.cookies.get(COOKIE, "")
        if not _VALUE.match(value):
            value = secrets.token_urlsafe(24)
        response.set_cookie(
            COOKIE, value, path=self._path, httponly=True, samesite="Strict", secure=request.secure
        )
        return self._sign(value)

    async def checked_form(self, request: web.Request) -> dict[str, str]:
        """The posted form, when its token is this browser's cookie's and it came from this
        origin; 403 otherwise."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise CsrfRejected("the sign-in form was posted from another site: sign in here")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        value, sent = request.cookies.get(COOKIE, ""), form.get("csrf", "")
        if not sent or not _VALUE.match(value):
            raise CsrfRejected("the form is missing its anti-forgery token: reload the page")
        if not hmac.compare_digest(self._sign(value).encode(), sent.encode()):
            raise CsrfRejected("the form's anti-forgery token does not match: reload the page")
        return form

    def forget(self, response: web.StreamResponse) -> None:
        """Signed in: the form's cookie has done its work."""
        response.del_cookie(COOKIE, path=self._path)


LOGIN_TOKENS = web.AppKey("login_tokens", LoginTokens)
