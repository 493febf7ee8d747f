"""The worker hosts' side of the HTTP API: ``/worker/...``, behind a worker token.

A worker sends ``Authorization: Bearer <worker token>`` (``optimized-versions worker-token
create NAME``); a wrong or revoked token is 401, counted against the address like a bad
phone token. Phones' tokens are never accepted here, nor worker tokens on the phone API.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from ..jellyfin.relay import Relayed, source_name
from ..jobs.models import Job, JobStatus
from ..keys import DISPATCHER, LIMITER, RELAY, STORE, WORKER_TOKENS
from ..nodes.dispatch import Dispatcher, Refused
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


def _dispatcher(request: web.Request) -> Dispatcher:
    dispatcher = request.app.get(DISPATCHER)
    if dispatcher is None:
        raise NotFound("this server has no worker hosts (QUEUE_URL is not set)")
    return dispatcher


@routes.post("/worker/queue")
async def queue(request: web.Request) -> web.Response:
    """SAQ's HttpQueue protocol, for the calling worker's own queue only."""
    node = require_worker(request)
    dispatcher = _dispatcher(request)
    try:
        answer = await dispatcher.proxy(node, await request.text())
    except Refused as exc:
        raise Forbidden(str(exc)) from None
    return web.Response(text=answer or "", content_type="application/json")


def own_job(request: web.Request, node: str) -> Job:
    """The job in the path, when it runs on ``node``; 404 for anything else."""
    job = request.app[STORE].get(request.match_info["id"])
    if job is None or job.node != node or job.status is not JobStatus.OPTIMIZING:
        raise NotFound(f"no job {request.match_info['id']} is running on {node}")
    return job


@routes.get("/worker/jobs/{id}/source/{tail:.*}")
async def source(request: web.Request) -> web.StreamResponse:
    """The job's source, fetched under this server's source rules (Range passed through):
    a worker needs neither Jellyfin's address nor a user's token."""
    job = own_job(request, require_worker(request))
    url = request.app[STORE].source_url(job.id)
    if url is None:
        raise NotFound(f"job {job.id} has no source any more")
    relayed = Relayed(f"/{source_name(url)}", url)
    return await request.app[RELAY].forward(relayed, request, request.match_info["tail"])
