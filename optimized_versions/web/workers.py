"""The worker hosts' side of the HTTP API: ``/worker/...``, behind a worker token.

A worker sends ``Authorization: Bearer <worker token>`` (``optimized-versions worker-token
create NAME``); a wrong or revoked token is 401, counted against the address like a bad
phone token. Phones' tokens are never accepted here, nor worker tokens on the phone API.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import TooManyRequests, Unauthorized
from ..keys import LIMITER, WORKER_TOKENS
from .metrics import version

routes = web.RouteTableDef()


def require_worker(request: web.Request) -> str:
    """The calling worker's name, or 401 (429 for an address that failed too often)."""
    limiter, address = request.app[LIMITER], request.remote or "unknown"
    if (wait := limiter.retry_after(address)) is not None:
        raise TooManyRequests(
            f"too many failed sign-ins from this address: try again in {wait:.0f} s", wait
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a worker token is needed: Authorization: Bearer <token>")
    name = request.app[WORKER_TOKENS].check(token.strip())
    if name is None:
        limiter.failed(address)
        raise Unauthorized("the worker token is unknown or revoked")
    return name


@routes.get("/worker/hello")
async def hello(request: web.Request) -> web.Response:
    """A worker's first call: its token works, and what the server is."""
    return web.json_response({"node": require_worker(request), "version": version()})
