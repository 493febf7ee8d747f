"""The worker hosts' side of the HTTP API: ``/worker/...``, behind a worker token.

A worker sends ``Authorization: Bearer <worker token>`` (``optimized-versions worker-token
create NAME``); a wrong or revoked token is 401, counted against the address like a bad
phone token. Phones' tokens are never accepted here, nor worker tokens on the phone API
(an admin's drain and resume, ``/worker/nodes/{name}/...``, are node_admin.py's: an admin's
phone token there, never a worker's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from ... import version
from ...errors import (
    BadRequest,
    Forbidden,
    NotFound,
    RequestTimeout,
    ServiceError,
    Unauthorized,
)
from ...jellyfin.relay import Relayed, source_name
from ...jobs import sidecars
from ...jobs.models import Job, JobStatus
from ...keys import CONFIG, JELLYFIN, RELAY, STORE, UPLOADS, WORKER_TOKENS
from ...nodes.protocol import Refused
from ...nodes.uploads import Conflict, parse_digest
from ..http.guards import dispatcher
from ..http.ratelimit import check_sign_ins, sign_in_failed

routes = web.RouteTableDef()


def require_worker(request: web.Request) -> str:
    """The calling worker's name, or 401 (429 for an address that failed too often)."""
    check_sign_ins(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a worker token is needed: Authorization: Bearer <token>")
    name = request.app[WORKER_TOKENS].check(token.strip())
    if name is None:
        sign_in_failed(request)
        raise Unauthorized("the worker token is unknown or revoked")
    return name


@routes.get("/worker/hello")
async def hello(request: web.Request) -> web.Response:
    """A worker's first call: its token works, and what the server is."""
    return web.json_response({"node": require_worker(request), "version": version()})


def worker_job(request: web.Request) -> Job:
    """The job in the path, when it runs on the calling worker: another worker's job (or
    one running here) is 404 exactly as a missing one; a job no longer running is 409."""
    worker = require_worker(request)
    job_id = request.match_info["id"]
    job = request.app[STORE].get(job_id)
    if job is None or job.node != worker:
        raise NotFound(f"no job with id {job_id!r} runs on worker {worker!r}")
    if job.status is not JobStatus.OPTIMIZING:
        raise Conflict(f"job {job_id} is {job.status}, not optimizing: its output is not wanted")
    return job


def _progress(offset: int, complete: bool) -> dict[str, str]:
    return {
        "Upload-Offset": str(offset),
        "Upload-Complete": "?1" if complete else "?0",
        "Cache-Control": "no-store",
    }


def _int_header(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise BadRequest(f"{name} must be a whole number of bytes, not {value!r}")
    return int(value)


@routes.head("/worker/jobs/{id}/output")
async def output_offset(request: web.Request) -> web.Response:
    """Where the upload stands: ``Upload-Offset`` bytes received, ``Upload-Complete: ?1``
    once the whole file arrived and its SHA-256 matched."""
    job = worker_job(request)
    uploads = request.app[UPLOADS]
    complete = uploads.received(job) is not None
    return web.Response(headers=_progress(uploads.offset(job), complete))


@routes.patch("/worker/jobs/{id}/output")
async def append_output(request: web.Request) -> web.Response:
    """Bytes from ``Upload-Offset`` on (which must be the bytes received so far, else 409
    with the right one); ``Upload-Complete: ?1`` with ``Repr-Digest`` ends the upload: the
    file is kept only when the SHA-256 of all its bytes matches (else 422, and it is
    removed). The answer to that last one is where the job's completion belongs."""
    job = worker_job(request)
    uploads = request.app[UPLOADS]
    offset = _int_header(request, "Upload-Offset")
    if offset is None:
        raise BadRequest("Upload-Offset is needed: ask HEAD where to resume")
    length = _int_header(request, "Upload-Length")
    complete = request.headers.get("Upload-Complete", "?0") == "?1"
    digest = parse_digest(request.headers.get("Repr-Digest", "")) if complete else None
    async with uploads.writing(job):
        if uploads.received(job) is not None:
            raise Conflict(
                f"job {job.id}: its output was already received",
                _progress(uploads.offset(job), True),
            )
        if offset != (current := uploads.offset(job)):
            raise Conflict(
                f"job {job.id}: {current} bytes were received, not {offset}: resume from there",
                _progress(current, False),
            )
        declared = request.content_length
        if declared is not None and length is not None and offset + declared > length:
            raise BadRequest(f"{offset} + {declared} bytes is more than Upload-Length {length}")
        uploads.check_space(job, declared or (length - offset if length else 0))
        size = await uploads.append(job, _body(request))
        try:  # the job may have been cancelled, or given to another worker, meanwhile
            worker_job(request)
        except ServiceError:
            uploads.discard(job)  # nobody will take it: no output lingers in the cache
            raise
        if digest is None:
            return web.Response(status=204, headers=_progress(size, False))
        received = await uploads.finish(job, digest, length)
    body = {"id": job.id, "size": received.size, "sha256": received.sha256}
    return web.json_response(body, headers=_progress(received.size, True))


@routes.delete("/worker/jobs/{id}/output")
async def discard_output(request: web.Request) -> web.Response:
    """The worker gives the upload up (e.g. to start again from 0)."""
    job = worker_job(request)
    uploads = request.app[UPLOADS]
    async with uploads.writing(job):
        uploads.discard(job)
    return web.Response(status=204)


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; each read may wait BODY_TIMEOUT at most (a whole
    output takes as long as it takes, a stalled sender does not hold the job's upload)."""
    timeout = request.app[CONFIG].body_timeout
    while True:
        try:
            async with asyncio.timeout(timeout):
                piece = await request.content.readany()
        except TimeoutError:
            request.content.feed_eof()
            raise RequestTimeout(f"no part of the body arrived for {timeout:g} s") from None
        except (ConnectionError, web.RequestPayloadError):  # what arrived is kept
            raise BadRequest("the connection broke before the body was complete") from None
        if not piece:
            return
        yield piece


@routes.post("/worker/queue")
async def queue(request: web.Request) -> web.Response:
    """SAQ's HttpQueue protocol, for the calling worker's own queue only."""
    node = require_worker(request)
    try:
        answer = await dispatcher(request).proxy(node, await request.text())
    except Refused as exc:
        raise Forbidden(str(exc)) from None
    return web.Response(text=answer or "", content_type="application/json")


@routes.get("/worker/jobs/{id}/source/{tail:.*}")
async def source(request: web.Request) -> web.StreamResponse:
    """The job's source, fetched under this server's source rules (Range passed through):
    a worker needs neither Jellyfin's address nor a user's token. The tail is the source's
    name or a token the relay put in one of this job's playlists (bound to the job): a
    worker reads its job's source and nothing else of Jellyfin (404)."""
    job = worker_job(request)
    url = request.app[STORE].source_url(job.id)
    if url is None:
        raise NotFound(f"job {job.id} has no source any more")
    relayed = Relayed(f"/{source_name(url)}", url, f"job {job.id}")
    return await request.app[RELAY].forward(relayed, request, request.match_info["tail"])


def _subtitles(request: web.Request, job: Job) -> sidecars.FromJellyfin:
    url = request.app[STORE].source_url(job.id) or ""
    found = sidecars.from_jellyfin(request.app.get(JELLYFIN), job.owner_id, job.item_id, url)
    if found is None:
        raise NotFound(f"job {job.id} has no Jellyfin token: its sidecar files cannot be had")
    return found


@routes.get("/worker/jobs/{id}/item")
async def job_item(request: web.Request) -> web.Response:
    """The item as Jellyfin lists it for the job's user (its sidecar subtitle files)."""
    job = worker_job(request)
    return web.json_response(await _subtitles(request, job).item() or {})


@routes.get("/worker/jobs/{id}/subtitles/{index:[0-9]{1,6}}")
async def job_subtitle(request: web.Request) -> web.Response:
    """A sidecar subtitle file of the job's item as SubRip, fetched with the user's token
    (which a worker host never sees); 503 with Jellyfin's reason when it is not had."""
    job = worker_job(request)
    source = sidecars.source_id(request.app[STORE].source_url(job.id) or "", job.item_id)
    data = await _subtitles(request, job).subtitle(
        source, int(request.match_info["index"]), sidecars.MAX_BYTES
    )
    return web.Response(body=data, content_type="application/x-subrip")
