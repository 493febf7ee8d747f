"""Live updates: the dashboard's (or a job page's) fragments, rendered by the same templates
as the first paint, sent as Server-Sent Events when they change (``GET /live``), or answered
once as JSON for the polling fallback (``GET /live.json``)."""

from __future__ import annotations

import asyncio
import json

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import sse_response

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

routes = web.RouteTableDef()
TICK = 1.0  # seconds between looks (a look that changes nothing sends nothing)
PING = 15.0  # seconds between keep-alive comments (proxies drop silent streams)

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
    principal = await page_user(request)
    session = await get_session(request)
    sessions = request.app[SESSIONS]
    last: dict[str, str] = {}
    async with sse_response(request, ping_interval=PING) as stream:
        while stream.is_connected() and not request.app[RUNTIME].shutting_down:
            if not sessions.alive(session.identity):  # signed out elsewhere: stop at once
                break
            try:
                now = await fragments(request, principal)
            except web.HTTPNotFound:  # the job was removed (retention, delete-cache)
                break
            changed = {key: html for key, html in now.items() if last.get(key) != html}
            if changed:
                await stream.send(json.dumps(changed), event="update")
                last.update(changed)
            await asyncio.sleep(TICK)
    return stream
