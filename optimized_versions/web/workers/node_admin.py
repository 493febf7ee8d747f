"""An admin's drain and resume of a worker host through the API (``/worker/nodes/{name}/...``,
in openapi.json): an admin's phone token, never a worker's. The dashboard's buttons for the
same are ``web/dashboard/node_actions.py``'s; both do ``web/http/operations.drain``."""

from __future__ import annotations

from aiohttp import web

from ..http.guards import require_admin
from ..http.middleware import authenticate
from ..http.operations import drain

routes = web.RouteTableDef()


async def _api_admin(request: web.Request) -> None:
    require_admin(await authenticate(request), "drain or resume a worker host")


@routes.post("/worker/nodes/{name}/drain")
async def drain_node(request: web.Request) -> web.Response:
    await _api_admin(request)
    return web.json_response(drain(request, True))


@routes.post("/worker/nodes/{name}/resume")
async def resume_node(request: web.Request) -> web.Response:
    await _api_admin(request)
    return web.json_response(drain(request, False))
