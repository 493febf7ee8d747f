"""GET/HEAD /download/:id: the finished MP4 through sendfile, with ranges and validators.

aiohttp's ``FileResponse`` does the sending (sendfile, Range, HEAD, If-Match...). Three things
are ours: ``If-Range`` with an entity tag (aiohttp compares only dates, and would serve a
range against a file the client no longer has); Android's first ``HEAD`` that carries no
token (answered with the size only: the job id is an unguessable capability); and the body
sent in steps that a worker thread has first read into the page cache, because sendfile()
reads what is not in memory inside the call, on the event loop's thread: a download of a file
not read lately stopped every other request for ~20 ms per call (the phones' polls among
them), where nginx would use ``aio threads``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import hdrs, web, web_fileresponse
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from ...errors import NotFound, RangeNotSatisfiable, Unauthorized
from ...jobs import cache
from ...jobs.models import DOWNLOADABLE, Job, JobStatus
from ...keys import CONFIG, LIFECYCLE, STORE, TELEMETRY
from ..http.guards import owned_job
from ..http.middleware import NO_TOKEN, authenticate, request_token

AHEAD = 2 * 1024 * 1024  # bytes read into the page cache ahead of the socket, first step
LARGEST = 32 * 1024 * 1024  # ... the largest step
FAST = 0.05  # seconds: a step that went out faster, the next one twice as large

routes = web.RouteTableDef()


@routes.get("/download/{id}")
async def download(request: web.Request) -> web.StreamResponse:
    if request.method == hdrs.METH_HEAD and request_token(request) is None:
        return _bare_head(request)
    job = owned_job(request, await authenticate(request))
    path = Path(job.output_path)
    if job.status not in DOWNLOADABLE or not cache.plain(path):
        raise NotFound(f"job {job.id} has no file to download (it is {job.status})")
    drop: tuple[str, ...] = ()
    if hdrs.IF_RANGE in request.headers:  # decided here: aiohttp compares dates only
        drop = (hdrs.IF_RANGE,) if _range_applies(request, path) else (hdrs.IF_RANGE, hdrs.RANGE)
    if hdrs.RANGE not in drop:
        _check_range(request, job.size)
    headers = {
        "Content-Type": "video/mp4",
        "X-File-Checksum": job.checksum or "",
        "X-File-Size": str(job.size),
        "Content-Disposition": _disposition(_download_name(job)),
    }
    collect = request.app[CONFIG].remove_file_after_right_download
    telemetry = request.app[TELEMETRY]

    async def after_sent(response: web.StreamResponse) -> None:
        content_range = response.headers.get(hdrs.CONTENT_RANGE, "")
        resumed = response.status == 206 and not content_range.startswith("bytes 0-")
        telemetry.served(job.id, response.content_length or 0, resumed)
        if not collect:
            return
        # read again: a cancel-job or delete-cache may have come while the file was sent
        now = request.app[STORE].get(job.id)
        if (
            now is not None
            and now.status is JobStatus.COMPLETED
            and _reached_end(response, now.size)
        ):
            await request.app[LIFECYCLE].cancel(now)

    return _Download(path, headers, drop, after_sent)


def _bare_head(request: web.Request) -> web.Response:
    """HEAD without a token: the size of a finished file and nothing else."""
    job = request.app[STORE].get(request.match_info["id"])
    if job is None or job.status not in DOWNLOADABLE or not cache.plain(Path(job.output_path)):
        raise Unauthorized(NO_TOKEN)
    return web.Response(headers={"Content-Length": str(job.size), "Accept-Ranges": "bytes"})


def _range_applies(request: web.Request, path: Path) -> bool:
    """False when If-Range names another version of the file: the client gets it whole."""
    validator = request.headers.get(hdrs.IF_RANGE, "").strip()
    st = path.stat()
    if validator.startswith(('"', "W/")):  # an entity tag: strong comparison only
        return validator == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    try:
        return int(st.st_mtime) <= parsedate_to_datetime(validator).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False  # a validator we cannot read cannot match


def _download_name(job: Job) -> str:
    name = job.item.get("Name")
    year = job.item.get("ProductionYear")
    base = str(name) if isinstance(name, str) and name.strip() else job.item_id
    if isinstance(year, int):
        base = f"{base} ({year})"
    cleaned = "".join(c if c.isprintable() and c not in '\\/:*?"<>|' else "_" for c in base)
    return cleaned.strip()[:150] + ".mp4"


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


class _Download(web.FileResponse):
    """aiohttp's file response, blind to the request headers ``drop`` names (If-Range was
    decided here), calling ``on_sent`` once a GET's body is handed to the socket."""

    def __init__(
        self,
        path: Path,
        headers: dict[str, str],
        drop: tuple[str, ...],
        on_sent: Callable[[web.StreamResponse], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(path, headers=headers)
        self._file = path
        self._drop = drop
        self._on_sent = on_sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._drop:
            kept = CIMultiDict(request.headers)
            for name in self._drop:
                kept.popall(name, None)
            request = request.clone(headers=kept)
        writer = await super().prepare(request)
        if self._on_sent is not None and request.method == hdrs.METH_GET:
            await self._on_sent(self)
        return writer

    async def _sendfile(
        self, request: web.BaseRequest, fobj: Any, offset: int, count: int
    ) -> AbstractStreamWriter:
        """aiohttp's sendfile of ``count`` bytes at ``offset`` (the whole file or a range), in
        steps, each read into the page cache by a worker thread (while the previous step goes
        out) before the socket's sendfile() takes it from memory. Steps start at AHEAD bytes
        and double, up to LARGEST, while each goes out within FAST seconds: a phone on Wi-Fi
        gets small steps (little read at once), a fast client few of them."""
        transport = request.transport
        if web_fileresponse.NOSENDFILE or self.compression or transport is None:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        loop, end, step = asyncio.get_running_loop(), offset + count, min(AHEAD, count)

        def read_ahead(start: int, size: int) -> asyncio.Future[None]:
            return asyncio.ensure_future(asyncio.to_thread(_into_cache, self._file, start, size))

        ahead = read_ahead(offset, step)
        try:
            while offset < end:
                await ahead
                began, following = loop.time(), min(step * 2, LARGEST)
                if offset + step < end:  # (sized as if this step goes fast: at most LARGEST)
                    ahead = read_ahead(offset + step, min(following, end - offset - step))
                await loop.sendfile(transport, fobj, offset, step)
                offset += step
                fast = loop.time() - began < FAST
                step = min(following if fast else step, end - offset)
        finally:
            ahead.cancel()  # (a client gone: its thread ends with its step, nothing waits)
        await web.StreamResponse.write_eof(self)
        return writer


def _into_cache(path: Path, offset: int, count: int) -> None:
    """Read a part of the file into the page cache without copying it anywhere (sendfile to
    /dev/null); on its own descriptor, as aiohttp may close its own meanwhile. Best effort:
    the socket's sendfile reads whatever is still missing."""
    with contextlib.suppress(OSError), path.open("rb") as src, open(os.devnull, "wb") as null:
        while count > 0 and (done := os.sendfile(null.fileno(), src.fileno(), offset, count)):
            offset, count = offset + done, count - done


def _check_range(request: web.Request, size: int) -> None:
    """Answer an unsatisfiable Range in JSON here (aiohttp's own 416 has no body)."""
    header = request.headers.get(hdrs.RANGE)
    if header is None:
        return
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
