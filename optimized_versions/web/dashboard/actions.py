"""The pages' buttons: plain forms (they work without JavaScript), each with the session's
anti-forgery token, each doing what the matching API endpoint does, then back to the page."""

from __future__ import annotations

import re

from aiohttp import web

from ...keys import HARDWARE, LIFECYCLE
from ..http import operations
from ..http.guards import require_admin
from .pages import base, page_user, visible_job
from .sessions import check_csrf

routes = web.RouteTableDef()


# a path on this server: printable ASCII (browsers drop tabs and newlines from a Location,
# so "/\t/evil.example" would be "//evil.example"), no backslash, never "//" at the start
_HERE = re.compile(r"/(?![/\\])[!-\[\]-~]*")


def go_back(request: web.Request, form: dict[str, str]) -> web.HTTPSeeOther:
    """Back where the form was (a path on this server only: never an open redirect)."""
    target = form.get("back", "")
    if not _HERE.fullmatch(target):
        target = "/"
    return web.HTTPSeeOther(f"{base(request)}{target}")


@routes.post("/jobs/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    job = visible_job(request, await page_user(request))
    await request.app[LIFECYCLE].cancel(job)  # cancel, collect or dismiss, as cancel-job
    raise go_back(request, form)


@routes.post("/jobs/{id}/start")
async def start(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    job = visible_job(request, await page_user(request))
    request.app[LIFECYCLE].start_now(job)
    raise go_back(request, form)


@routes.post("/admin/probe")
async def reprobe(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    require_admin(await page_user(request))
    await request.app[HARDWARE].load(refresh=True)
    raise go_back(request, form)


@routes.post("/admin/clear-cache")
async def clear_cache(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    require_admin(await page_user(request))
    await operations.delete_cache(request.app)
    raise go_back(request, form)
