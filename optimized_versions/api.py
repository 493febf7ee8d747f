"""The eight endpoints of the published API (and its OpenAPI document). Handlers stay thin."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import jsonschema
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from . import cleanup
from .auth import extract_token
from .config import Config
from .errors import BadRequest, Forbidden, NotFound, RangeNotSatisfiable, UnsupportedMediaType
from .hardware import Hardware
from .http import authenticate
from .models import DOWNLOADABLE, Job, JobStatus, Principal
from .placement import Placement
from .scheduler import Scheduler
from .sources import choose_source
from .store import JobStore
from .urls import redact_url

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", JobStore)
SCHEDULER = web.AppKey("scheduler", Scheduler)
JANITOR = web.AppKey("janitor", cleanup.Janitor)
HARDWARE = web.AppKey("hardware", Hardware)
HTTP = web.AppKey("http", aiohttp.ClientSession)
PLACEMENT = web.AppKey("placement", Placement)
PROFILE_NAMES: web.AppKey[frozenset[str]] = web.AppKey("profile_names")
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")

OPENAPI: dict[str, Any] = json.loads((Path(__file__).parent / "openapi.json").read_text())
_REQUEST_VALIDATOR = jsonschema.Draft202012Validator(
    OPENAPI["components"]["schemas"]["OptimizeRequest"]
)
# A repeated request answers with the earlier job while that one is still useful.
_REUSABLE = (
    JobStatus.QUEUED,
    JobStatus.PENDING_DOWNLOADS,
    JobStatus.OPTIMIZING,
    JobStatus.COMPLETED,
    JobStatus.READY_FOR_REMOVAL,
)

routes = web.RouteTableDef()


def _owned_job(request: web.Request, principal: Principal) -> Job:
    job_id = request.match_info["id"]
    job = request.app[STORE].get(job_id)
    if job is None or not (principal.is_admin or job.owner_id == principal.user_id):
        raise NotFound(f"no job with id {job_id!r}")
    return job


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), not {request.content_type!r}"
        )
    try:
        body = json.loads(await request.read(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    error = jsonschema.exceptions.best_match(_REQUEST_VALIDATOR.iter_errors(body))
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


@routes.post("/optimize-version")
async def optimize_version(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await _json_body(request)
    app = request.app
    config, store = app[CONFIG], app[STORE]
    _check_url(body["url"])
    profile = body.get("profile") or config.default_profile
    names: frozenset[str] = app[PROFILE_NAMES]
    if profile not in names:
        known = ", ".join(sorted(names))
        raise BadRequest(f"invalid profile: {profile!r} does not exist (known: {known})")
    # Before the duplicate check: from there to store.add nothing awaits, so two
    # concurrent retries of one request cannot both create a job.
    token = extract_token(request.headers, request.query) or ""
    source = await choose_source(
        body["url"], body["itemId"], principal.user_id, token, config, app.get(HTTP)
    )
    earlier = store.find_duplicate(
        principal.user_id, body["deviceId"], body["itemId"], profile, _REUSABLE
    )
    if earlier is not None and earlier.status is JobStatus.READY_FOR_REMOVAL:
        if cleanup.file_intact(
            earlier.output_path, earlier.size
        ):  # collected, but the file is still here: serve it again
            store.transition(earlier, JobStatus.COMPLETED, collected_at=None)
        else:
            earlier = None
    if earlier is not None:
        return web.json_response({"id": earlier.id}, status=201)
    job_id = str(uuid.uuid4())
    job = Job(
        id=job_id,
        owner_id=principal.user_id,
        owner_name=principal.name,
        device_id=body["deviceId"],
        item_id=body["itemId"],
        item=body.get("item") or {},
        input_url=redact_url(body["url"]),
        file_extension=body.get("fileExtension"),
        profile=profile,
        status=JobStatus.QUEUED,
        created_at=app[CLOCK](),
        output_path=str((config.cache_dir / f"{job_id}.mp4").resolve()),
    )
    store.add(job, source)
    app[SCHEDULER].wake()
    return web.json_response({"id": job.id}, status=201)


@routes.get("/job-status/{id}")
async def job_status(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return web.json_response(_owned_job(request, principal).to_api())


@routes.get("/all-jobs")
async def all_jobs(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    device_id = request.query.get("deviceId")
    statuses = None
    if device_id is not None:
        hidden = (JobStatus.READY_FOR_REMOVAL, JobStatus.CANCELLED)
        statuses = [s for s in JobStatus if s not in hidden]
    pages = request.app[STORE].pages_raw(
        owner_id=None if principal.is_admin else principal.user_id,
        device_id=device_id,
        statuses=statuses,
    )
    # Streamed a page at a time, each stored item spliced in as it is: an admin's list of
    # 10,000 jobs costs a page of memory, not 10,000 parsed items and one huge string.
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    separator = "["
    for page in pages:
        parts = []
        for job, item in page:
            body = job.to_api()
            del body["item"]
            parts.append(f'{separator}{json.dumps(body)[:-1]}, "item": {item}}}')
            separator = ","
        await response.write("".join(parts).encode())
    await response.write(b"[]" if separator == "[" else b"]")
    await response.write_eof()
    return response


@routes.delete("/cancel-job/{id}")
async def cancel_job(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    job = _owned_job(request, principal)
    before = job.status
    await request.app[SCHEDULER].cancel(job)
    after = request.app[STORE].get(job.id)
    now = after.status if after is not None else JobStatus.READY_FOR_REMOVAL
    if now is JobStatus.READY_FOR_REMOVAL and before is JobStatus.COMPLETED:
        grace = request.app[CONFIG].removal_grace
        message = f"job {job.id} collected: its file is removed in {grace:g} s"
    elif now is JobStatus.CANCELLED and before is not JobStatus.CANCELLED:
        message = f"job {job.id} cancelled"
    else:
        message = f"job {job.id} is {now}"
    return web.json_response({"message": message})


@routes.post("/start-job/{id}")
async def start_job(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    job = _owned_job(request, principal)
    request.app[SCHEDULER].start_now(job)
    return web.json_response({"message": f"job {job.id} started"})


def _download_name(job: Job) -> str:
    name = job.item.get("Name")
    year = job.item.get("ProductionYear")
    base = str(name) if isinstance(name, str) and name.strip() else job.item_id
    if isinstance(year, int):
        base = f"{base} ({year})"
    cleaned = "".join(c if c.isprintable() and c not in '\\/:*?"<>|' else "_" for c in base)
    return cleaned.strip()[:150] + ".mp4"


@routes.get("/download/{id}")
async def download(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    job = _owned_job(request, principal)
    path = Path(job.output_path)
    if job.status not in DOWNLOADABLE or not path.is_file():
        raise NotFound(f"job {job.id} has no file to download (it is {job.status})")
    _check_range(request, job.size)
    name = _download_name(job)
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    headers = {
        "Content-Type": "video/mp4",
        "X-File-Checksum": job.checksum or "",
        "X-File-Size": str(job.size),
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        ),
    }
    if not request.app[CONFIG].remove_file_after_right_download:
        return web.FileResponse(path, headers=headers)

    async def collect_when_whole(response: web.StreamResponse) -> None:
        # read again: a cancel-job or delete-cache may have come while the file was sent
        now = request.app[STORE].get(job.id)
        if (
            now is not None
            and now.status is JobStatus.COMPLETED
            and _reached_end(response, now.size)
        ):
            await request.app[SCHEDULER].cancel(now)

    return _FileResponseWithCallback(path, headers, collect_when_whole)


class _FileResponseWithCallback(web.FileResponse):
    """Calls back once a GET's body has been handed to the socket (sendfile is done)."""

    def __init__(
        self,
        path: Path,
        headers: dict[str, str],
        on_sent: Callable[[web.StreamResponse], Awaitable[None]],
    ) -> None:
        super().__init__(path, headers=headers)
        self._on_sent = on_sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method == "GET":
            await self._on_sent(self)
        return writer


def _check_range(request: web.Request, size: int) -> None:
    """Answer an unsatisfiable Range in JSON here (aiohttp's own 416 has no body)."""
    header = request.headers.get(hdrs.RANGE)
    if header is None or hdrs.IF_RANGE in request.headers:
        return  # with If-Range, aiohttp decides whether the range applies at all
    try:
        start = request.http_range.start
    except ValueError:  # malformed or several ranges
        raise RangeNotSatisfiable(size) from None
    empty_suffix = header.replace(" ", "").lower().rstrip("0") == "bytes=-"
    if empty_suffix or (start is not None and start >= size):
        raise RangeNotSatisfiable(size)


def _reached_end(response: web.StreamResponse, size: int) -> bool:
    if response.status == 200:
        return True
    content_range = response.headers.get("Content-Range", "")
    return response.status == 206 and content_range.endswith(f"-{size - 1}/{size}")


@routes.get("/statistics")
async def statistics(request: web.Request) -> web.Response:
    await authenticate(request)
    store = request.app[STORE]
    size = await asyncio.to_thread(cleanup.cache_size, request.app[CONFIG].cache_dir)
    return web.json_response(
        {
            "cacheSize": cleanup.human_size(size),
            "cacheBytes": size,
            "activeJobs": store.count(JobStatus.OPTIMIZING),
            "queuedJobs": store.count(JobStatus.QUEUED) + store.count(JobStatus.PENDING_DOWNLOADS),
            **store.statistics(),
        }
    )


@routes.delete("/delete-cache")
async def delete_cache(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise Forbidden("only an administrator can delete the cache")
    await request.app[SCHEDULER].cancel_all()
    dropped = request.app[JANITOR].clear_cache()
    return web.json_response({"message": f"cache deleted: {dropped} file(s) removed"})


@routes.get("/hardware")
async def hardware(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(
        {**request.app[HARDWARE].describe(), "load": request.app[PLACEMENT].describe()}
    )


@routes.post("/hardware/probe")
async def reprobe(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise Forbidden("only an administrator can probe the hardware again")
    await request.app[HARDWARE].load(refresh=True)
    return web.json_response(
        {**request.app[HARDWARE].describe(), "load": request.app[PLACEMENT].describe()}
    )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)
