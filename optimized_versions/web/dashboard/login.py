"""Sign-in and sign-out for the pages. With Jellyfin: a user name and password (the server
asks Jellyfin's AuthenticateByName through the one Jellyfin client) or a pasted access
token. Standalone: the server's own token. Failed sign-ins count against the client's
address (the same limiter as the API's tokens). The form's anti-forgery token is a signed
cookie (login_token.py): only a sign-in makes a server-side session."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from ...errors import ServiceError
from ...jobs.models import Principal
from ...keys import CONFIG, JELLYFIN
from ..http.auth import AUTHENTICATOR, TOKEN_SHAPE
from ..http.ratelimit import check_sign_ins, sign_in_failed
from .login_token import LOGIN_TOKENS
from .pages import base
from .session_store import SESSIONS
from .sessions import check_csrf, signed_in, start_session

routes = web.RouteTableDef()


def _form_page(request: web.Request, message: str | None, status: int) -> web.Response:
    response = web.Response(status=status, content_type="text/html")
    context: dict[str, Any] = {
        "csrf": request.app[LOGIN_TOKENS].form_token(request, response),
        "jellyfin": request.app[CONFIG].jellyfin_url is not None,
        "message": message,
        "user": None,
        "query": "",
    }
    response.text = aiohttp_jinja2.render_string("login.html", request, context)
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    if await signed_in(request) is not None:
        raise web.HTTPSeeOther(f"{base(request)}/")
    return _form_page(request, None, 200)


async def _token_from(request: web.Request, form: dict[str, str]) -> tuple[str, Principal]:
    """The access token the form leads to, and its user; ServiceError (401...) when none."""
    token = form.get("token", "").strip()
    username = form.get("username", "").strip()
    if not token and username and JELLYFIN in request.app:
        token = await request.app[JELLYFIN].authenticate_by_name(username, form.get("password", ""))
    if not token or not TOKEN_SHAPE.match(token):
        raise _Refused("enter a user name and password, or an access token")
    return token, await request.app[AUTHENTICATOR].authenticate(token)  # 401: not accepted


class _Refused(ServiceError):
    status = 401


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.app[LOGIN_TOKENS].checked_form(request)
    try:
        check_sign_ins(request)
        token, principal = await _token_from(request, form)
    except ServiceError as exc:
        if exc.status == 401:
            sign_in_failed(request)
            return _form_page(request, f"sign-in failed: {exc.message}", 401)
        return _form_page(request, exc.message, exc.status)
    await start_session(request, request.app[SESSIONS], token, principal)
    signed = web.HTTPSeeOther(f"{base(request)}/")
    request.app[LOGIN_TOKENS].forget(signed)
    raise signed


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    await check_csrf(request)
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther(f"{base(request)}/login")
