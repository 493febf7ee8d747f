"""The published API (eight endpoints, ``GET /hardware`` and the OpenAPI document).
Handlers stay thin: parse, call the service or the scheduler, respond."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from aiohttp import web

from ...errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnreadableBody,
    UnsupportedMediaType,
)
from ...jobs import cache
from ...jobs.models import RULES_DEVICE, JobStatus
from ...keys import (
    CONFIG,
    DISPATCHER,
    HARDWARE,
    LIFECYCLE,
    PLACER,
    SERVICE,
    STORE,
)
from ..http import operations
from ..http.guards import owned_job, owner_filter, require_admin
from ..http.middleware import authenticate, request_token
from .listcache import BODY, LISTS, SHOWN

OPENAPI: dict[str, Any] = json.loads((Path(__file__).parent / "openapi.json").read_text())
DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("document")  # the served OpenAPI document
VALIDATOR: web.AppKey[jsonschema.protocols.Validator] = web.AppKey("validator")


def served_document(profiles: frozenset[str]) -> dict[str, Any]:
    """The document as this server serves it and validates by: the profile names it has."""
    document = copy.deepcopy(OPENAPI)
    request = document["components"]["schemas"]["OptimizeRequest"]["properties"]
    request["profile"]["enum"] = sorted(profiles)
    return document


def request_validator(document: dict[str, Any]) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(document["components"]["schemas"]["OptimizeRequest"])


routes = web.RouteTableDef()


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), not {request.content_type!r}"
        )
    timeout = request.app[CONFIG].body_timeout
    try:
        async with asyncio.timeout(timeout):  # a body sent a byte at a time ends here
            raw = await request.read()
    except TimeoutError:
        request.content.feed_eof()  # no lingering read of the rest of a slow body
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from None
    except web.RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on a plain body
        why = str(exc).splitlines()[-1].strip()
        request.content.feed_eof()  # nothing more will be read of it (no lingering read)
        raise UnreadableBody(f"the body could not be read: {why}") from None
    except ConnectionError:  # the client hung up mid-body: nobody is left to answer
        raise BadRequest("the client closed the connection before the body was complete") from None
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    error = jsonschema.exceptions.best_match(request.app[VALIDATOR].iter_errors(body))
    if error is not None:
        field = ".".join(str(p) for p in error.path) or "body"
        raise BadRequest(f"invalid {field}: {error.message}")
    for field, value in body.items():  # lone surrogates cannot be stored or sent back
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"invalid {field}: it is not valid Unicode text") from None
    return dict(body)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise BadRequest(f"invalid url: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("invalid url: it must be an http(s) URL with a host")


def _check_item(item: object, limit: int) -> None:
    size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limit:
        raise PayloadTooLarge(f"item is too large: {size} bytes of JSON, at most {limit}")


@routes.post("/optimize-version")
async def optimize_version(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await _json_body(request)
    _check_url(body["url"])
    _check_item(body.get("item"), request.app[CONFIG].max_item_size)
    if body["deviceId"] == RULES_DEVICE:  # the rules' own jobs: no queue place, no cache limit
        raise BadRequest(f"invalid deviceId: {RULES_DEVICE!r} is the server's own (the rules')")
    token = request_token(request) or ""
    job_id = await request.app[SERVICE].submit(principal, token, body)
    return web.json_response({"id": job_id}, status=201)


@routes.get("/job-status/{id}")
async def job_status(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return web.json_response(owned_job(request, principal).to_api())


@routes.get("/all-jobs")
async def all_jobs(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    device_id = request.query.get("deviceId")
    store, owner = request.app[STORE], owner_filter(principal)
    lists = request.app[LISTS]
    key, version = (owner, device_id), lists.list_version(device_id)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if (body := lists.get(key, version)) is not None:
        return web.Response(body=body, headers=headers)  # nothing changed since it was made
    where = {
        "owner_id": owner,
        "device_id": device_id,
        # a device's list: without cancelled, collected and dismissed jobs
        "statuses": None if device_id is None else SHOWN,
        "hide_collected": device_id is not None,
    }
    # A list of up to BODY bytes is made whole (no await: nothing changes meanwhile), sent
    # in one write and kept. A longer one (an admin's 10,000 jobs) is streamed a page at a
    # time, each stored item spliced in as it is: a page of memory, not 10,000 parsed items.
    parts: list[bytes] = []
    size, response = 0, None
    for page in lists.parts(store, **where):
        parts += page
        size += sum(map(len, page))
        if size > BODY:
            if response is None:
                response = web.StreamResponse(headers=headers)
                await response.prepare(request)
            await response.write(b"".join(parts))
            parts = []
    body = b"".join(parts)
    if response is None:
        lists.put(key, version, body)
        return web.Response(body=body, headers=headers)
    await response.write(body)
    await response.write_eof()
    return response


@routes.delete("/cancel-job/{id}")
async def cancel_job(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    job = owned_job(request, principal)
    before = job.status
    await request.app[LIFECYCLE].cancel(job)
    after = request.app[STORE].get(job.id)
    now = after.status if after is not None else JobStatus.READY_FOR_REMOVAL
    if now is JobStatus.READY_FOR_REMOVAL and before is JobStatus.COMPLETED:
        grace = request.app[CONFIG].removal_grace
        message = f"job {job.id} collected: its file is removed in {grace:g} s"
    elif now is JobStatus.CANCELLED and before is not JobStatus.CANCELLED:
        message = f"job {job.id} cancelled"
    elif now is JobStatus.FAILED:
        message = f"job {job.id} failed and is dismissed"
    else:
        message = f"job {job.id} is {now}"
    return web.json_response({"message": message})


@routes.post("/start-job/{id}")
async def start_job(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    job = owned_job(request, principal)
    request.app[LIFECYCLE].start_now(job)
    return web.json_response(
        {"message": f"job {job.id} is first in the queue: it starts when a slot is free"}
    )


@routes.get("/statistics")
async def statistics(request: web.Request) -> web.Response:
    await authenticate(request)
    store = request.app[STORE]
    size = await asyncio.to_thread(cache.cache_size, request.app[CONFIG].cache_dir)
    return web.json_response(
        {
            "cacheSize": cache.human_size(size),
            "cacheBytes": size,
            "activeJobs": store.count(JobStatus.OPTIMIZING),
            "queuedJobs": store.count(JobStatus.QUEUED) + store.count(JobStatus.PENDING_DOWNLOADS),
            **store.statistics(),
        }
    )


@routes.delete("/delete-cache")
async def delete_cache(request: web.Request) -> web.Response:
    require_admin(await authenticate(request), "delete the cache")
    dropped = await operations.delete_cache(request.app)
    return web.json_response({"message": f"cache deleted: {dropped} file(s) removed"})


def _hardware(request: web.Request) -> dict[str, Any]:
    body = {**request.app[HARDWARE].describe(), "load": request.app[PLACER].describe()}
    if (dispatcher := request.app.get(DISPATCHER)) is not None:  # worker hosts
        body["nodes"] = dispatcher.describe()
    return body


@routes.get("/hardware")
async def hardware(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(_hardware(request))


@routes.post("/hardware/probe")
async def reprobe(request: web.Request) -> web.Response:
    require_admin(await authenticate(request), "probe the hardware again")
    await request.app[HARDWARE].load(refresh=True)
    return web.json_response(_hardware(request))


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])
