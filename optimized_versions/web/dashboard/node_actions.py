"""The buttons of the dashboard's "Worker hosts" section, an admin's alone: drain and resume
a node, make and revoke worker tokens. Plain forms with the session's anti-forgery token,
as ``actions.py``; the API's drain and resume (an admin's phone token) are
``web/workers/node_admin.py``'s, and both do ``web/http/operations.drain``.

A new worker token is shown once, on the page the create form answers with (``no-store``:
not kept by the browser's cache), and never again: the server keeps only its hash.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ...errors import NotFound
from ...keys import WORKER_TOKENS
from ...nodes.tokens import TokenError
from ..http.guards import require_admin
from ..http.operations import drain
from .actions import go_back
from .pages import common, page_user
from .sessions import check_csrf

routes = web.RouteTableDef()


@routes.post("/admin/nodes/{name}/{action:drain|resume}")
async def drain_form(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    require_admin(await page_user(request))
    drain(request, request.match_info["action"] == "drain")
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
