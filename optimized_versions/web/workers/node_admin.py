"""An admin's hold on the worker hosts: drain and resume a node, make and revoke worker
tokens. From the dashboard (plain forms with the session's anti-forgery token, as
``actions.py``), and drain/resume also from the API (a phone admin's token).

A new worker token is shown once, on the page the create form answers with (``no-store``:
not kept by the browser's cache), and never again: the server keeps only its hash.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ...errors import Forbidden, NotFound
from ...keys import DISPATCHER, WORKER_TOKENS
from ...nodes.dispatch import Dispatcher
from ...nodes.tokens import TokenError
from ..dashboard.actions import go_back
from ..dashboard.pages import common, page_user
from ..dashboard.sessions import check_csrf, require_admin
from ..http.middleware import authenticate

routes = web.RouteTableDef()


def _dispatcher(request: web.Request) -> Dispatcher:
    dispatcher = request.app.get(DISPATCHER)
    if dispatcher is None:
        raise NotFound("this server has no worker hosts (QUEUE_URL is not set)")
    return dispatcher


def _drain(request: web.Request, draining: bool) -> dict[str, Any]:
    name = request.match_info["name"]
    if not _dispatcher(request).drain(name, draining):
        raise NotFound(f"no worker host named {name!r} has been heard from")
    what = "takes no new job; its running jobs finish" if draining else "takes jobs again"
    return {"name": name, "draining": draining, "message": f"worker host {name} {what}"}


# -- the dashboard's forms -----------------------------------------------------------------


@routes.post("/admin/nodes/{name}/drain")
async def drain_form(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    require_admin(await page_user(request))
    _drain(request, True)
    raise go_back(request, form)


@routes.post("/admin/nodes/{name}/resume")
async def resume_form(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    require_admin(await page_user(request))
    _drain(request, False)
    raise go_back(request, form)


@routes.post("/admin/worker-tokens")
async def create_token(request: web.Request) -> web.Response:
    """Make a token for a new worker host and show it, this once."""
    form = await check_csrf(request)
    principal = await page_user(request)
    require_admin(principal)
    name = form.get("name", "").strip()
    context = {**await common(request, principal), "name": name, "token": None, "error": None}
    try:
        context["token"] = request.app[WORKER_TOKENS].create(name)
    except TokenError as exc:
        context["error"] = str(exc)
    response = aiohttp_jinja2.render_template(
        "worker_token.html", request, context, status=400 if context["error"] else 200
    )
    response.headers["Cache-Control"] = "no-store"  # the token must not stay in a cache
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@routes.post("/admin/worker-tokens/{name}/revoke")
async def revoke_token(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    require_admin(await page_user(request))
    try:
        request.app[WORKER_TOKENS].revoke(request.match_info["name"])
    except TokenError as exc:
        raise NotFound(str(exc)) from None
    raise go_back(request, form)


# -- the API (openapi.json) ------------------------------------------------------------


async def _api_admin(request: web.Request) -> None:
    if not (await authenticate(request)).is_admin:
        raise Forbidden("only an administrator can drain or resume a worker host")


@routes.post("/worker/nodes/{name}/drain")
async def drain(request: web.Request) -> web.Response:
    await _api_admin(request)
    return web.json_response(_drain(request, True))


@routes.post("/worker/nodes/{name}/resume")
async def resume(request: web.Request) -> web.Response:
    await _api_admin(request)
    return web.json_response(_drain(request, False))
