"""Live updates: the dashboard's (or a job page's) fragments, rendered by the same templates
as the first paint, sent as Server-Sent Events when they change (``GET /live``), or answered
once as JSON for the polling fallback (``GET /live.json``).

A stream checks its session's token again on every tick (through the authenticator's short
cache, as every page does) and ends when it is refused, the session with it. One session holds
at most ``LIVE_STREAMS`` streams open; one more is answered 429, and that page polls."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import EventSourceResponse, sse_response

from ...errors import ServiceError, TooManyRequests
from ...jobs.models import Principal
from ...keys import RUNTIME
from .node_views import nodes_context
from .pages import (
    common,
    devices_context,
    job_context,
    jobs_context,
    page_user,
    visible_job,
)
from .session_store import SESSIONS
from .sessions import signed_in

routes = web.RouteTableDef()
TICK = 1.0  # seconds between looks (a look that changes nothing sends nothing)
PING = 15.0  # seconds between keep-alive comments (proxies drop silent streams)


class LiveStreams:
    """The streams open per session, at most ``cap`` each (a session's hundred tabs must not
    take the server's CPU from everyone else)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()

    @contextmanager
    def held(self, session: str) -> Iterator[None]:
        if self._open[session] >= self.cap:
            raise TooManyRequests(
                f"this session already has {self.cap} live streams open (LIVE_STREAMS):"
                " this page polls /live.json instead"
            )
        self._open[session] += 1
        try:
            yield
        finally:
            self._open[session] -= 1
            if not self._open[session]:
                del self._open[session]


LIVE_STREAMS = web.AppKey("live_streams", LiveStreams)
_DASHBOARD = {"jobs": "_jobs.html", "devices": "_devices.html", "history": "_history.html"}


async def fragments(request: web.Request, principal: Principal) -> dict[str, str]:
    """The parts of the page that change, as HTML."""
    env = aiohttp_jinja2.get_env(request.app)
    context = await common(request, principal)
    job_id = request.query.get("job")
    if job_id is not None:
        job = visible_job(request, principal, job_id)
        context.update(job_context(request, job))
        return {"job": env.get_template("_job.html").render(context)}
    context.update(jobs_context(request, principal))
    context.update(devices_context(request))
    context.update(nodes_context(request, principal))
    parts = {**_DASHBOARD, **({"nodes": "_nodes.html"} if context["workers"] else {})}
    return {key: env.get_template(name).render(context) for key, name in parts.items()}


@routes.get("/live.json")
async def live_json(request: web.Request) -> web.Response:
    principal = await page_user(request)
    return web.json_response(await fragments(request, principal))


@routes.get("/live")
async def live(request: web.Request) -> web.StreamResponse:
    await page_user(request)  # signed out: to the sign-in page
    session = await get_session(request)
    sessions = request.app[SESSIONS]
    last: dict[str, str] = {}
    assert session.identity is not None  # a signed-in session has its id
    with request.app[LIVE_STREAMS].held(session.identity):
        async with sse_response(request, ping_interval=PING) as stream:
            while _listening(request, stream) and sessions.alive(session.identity):
                try:
                    principal = await signed_in(request)  # revoked: so is the session
                    if principal is None:
                        break
                    now = await fragments(request, principal)
                except (ServiceError, web.HTTPNotFound):  # Jellyfin unreachable; job gone
                    break
                changed = {key: html for key, html in now.items() if last.get(key) != html}
                if changed:
                    await stream.send(json.dumps(changed), event="update")
                    last.update(changed)
                await asyncio.sleep(TICK)
    return stream


def _listening(request: web.Request, stream: EventSourceResponse) -> bool:
    """The browser is still there (a closed tab frees its place within a tick)."""
    transport = request.transport
    gone = transport is None or transport.is_closing()
    return not gone and stream.is_connected() and not request.app[RUNTIME].shutting_down
