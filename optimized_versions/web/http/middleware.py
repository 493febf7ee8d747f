"""HTTP plumbing: every error as JSON, 503 while shutting down, and the caller's identity."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ...errors import ServiceError, Unauthorized, Unavailable
from ...jobs.models import Principal
from ...jobs.rows import storage_problem
from ...keys import RUNTIME
from ...logs import Every
from .auth import AUTHENTICATOR, TOKEN_SHAPE, extract_token
from .ratelimit import check_sign_ins, sign_in_failed

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NO_TOKEN = "no access token: send it in Authorization, X-Emby-Token or ?api_key="


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    }
    return web.json_response(body, status=status, headers=headers)


def errors_middleware() -> Middleware:
    """Every error as JSON; a full or read-only data folder logged once a minute (per app:
    two servers in one process, as the tests run them, do not share the minute)."""
    storage_log = Every(60.0)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.app[RUNTIME].shutting_down:
                raise Unavailable("the server is shutting down")
            return await handler(request)
        except ServiceError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
            if exc.close:
                response.force_close()
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Content-Range")}
            return error_response(exc.status, _http_message(exc, request), headers)
        except Exception as exc:
            problem = storage_problem(exc) if isinstance(exc, sqlite3.Error) else None
            if problem is not None:  # the data folder's fault: say so, once a minute
                if storage_log.due():
                    log.error("job store: %s (%s)", problem.message, exc)
                return error_response(problem.status, problem.message)
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal server error")

    return errors


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no such endpoint: {request.method} {request.path}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return f"the request body is too large: {exc.text}"
    return exc.text or exc.reason


def request_token(request: web.Request) -> str | None:
    return extract_token(request.headers, request.query)


async def authenticate(request: web.Request) -> Principal:
    """The caller, or 401; 429 for an address that failed too often in the last minute."""
    check_sign_ins(request)
    token = request_token(request)
    try:
        if token is None:
            raise Unauthorized(NO_TOKEN)
        if not TOKEN_SHAPE.match(token):
            raise Unauthorized("the access token is malformed")
        return await request.app[AUTHENTICATOR].authenticate(token)
    except Unauthorized:
        if token is not None:  # a request without a token guesses nothing
            sign_in_failed(request)
        raise
