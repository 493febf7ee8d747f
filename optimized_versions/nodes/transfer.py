"""A worker's side of what crosses from and to the server: its sidecar subtitle files
(``FromServer``) and the upload (``nodes/uploads.py`` is the server's): send a finished
output to the main server, resuming from the server's offset after any break.

One PATCH per ``chunk`` (8 MiB by default), each streamed from the file in 1 MiB reads, so
memory stays small whatever the file. Why chunks rather than one body for the whole file:
every request has a Content-Length (the server checks its space before it writes, and a cut
is told apart from an end), every answer confirms an offset (progress is acknowledged, and a
stalled link loses at most the chunk in flight, of which the server keeps what arrived), and
reverse proxies that cap or buffer request bodies (nginx's ``client_max_body_size``) pass
it. The cost is a round trip per chunk: ``bench/bench_upload.py`` measures it on loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from ..errors import Unavailable
from .uploads import repr_digest

log = logging.getLogger(__name__)

MiB = 1024 * 1024
READ_BLOCK = MiB
MAX_WAIT = 30.0  # seconds: the longest wait between attempts
# the last PATCH waits while the server hashes the whole file
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)


class UploadError(Exception):
    """The output could not be delivered; the message says why."""


class _Retry(Exception):
    """A failure worth another attempt: the link, the server's 5xx, or a lost race."""


class _Restart(Exception):
    """The server's copy did not match (422): it was removed, send it all again."""


async def upload(
    session: aiohttp.ClientSession,
    base_url: str,
    token: str,
    job_id: str,
    path: Path,
    sha256: str,
    *,
    chunk: int = 8 * MiB,
    attempts: int = 5,
    backoff: float = 0.5,
) -> None:
    """Deliver ``path`` (whose SHA-256 is ``sha256``, hex) as job ``job_id``'s output.

    ``attempts`` failures in a row (no byte acknowledged between them) raise UploadError;
    the waits between them double from ``backoff`` up to MAX_WAIT seconds."""
    url = f"{base_url.rstrip('/')}/worker/jobs/{quote(job_id, safe='')}/output"
    auth = {"Authorization": f"Bearer {token}"}
    size = path.stat().st_size
    sender = _Sender(session, url, auth, path, size, repr_digest(sha256))
    failures, restarted = 0, False
    while True:
        try:
            offset, complete = await sender.head()
            if complete:
                return
            if offset > size:  # not this file's bytes: drop them and start again
                await sender.delete()
                continue
            while True:
                end = min(size, offset + chunk)
                offset = await sender.patch(offset, end, last=end == size)
                failures = 0  # progress: the count is of failures in a row
                if end == size:
                    return
        except (_Retry, aiohttp.ClientError, TimeoutError) as exc:
            failures += 1
            why = str(exc) or type(exc).__name__  # a bare timeout has no message
            if failures >= attempts:
                raise UploadError(
                    f"job {job_id}: the upload failed {attempts} times in a row, last: {why}"
                ) from exc
            wait = min(MAX_WAIT, backoff * 2 ** (failures - 1))
            log.warning("job %s: upload interrupted (%s); again in %.1f s", job_id, why, wait)
            await asyncio.sleep(wait)
        except _Restart as exc:
            if restarted:
                raise UploadError(f"job {job_id}: sent twice, wrong twice: {exc}") from exc
            restarted = True
            log.warning("job %s: %s; sending it again from the start", job_id, exc)


class _Sender:
    """The three requests, each turning the server's answer into an offset or an exception."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        auth: dict[str, str],
        path: Path,
        size: int,
        digest: str,
    ) -> None:
        self.session, self.url, self.auth = session, url, auth
        self.path, self.size, self.digest = path, size, digest

    async def head(self) -> tuple[int, bool]:
        async with self.session.head(self.url, headers=self.auth, timeout=TIMEOUT) as resp:
            await _check(resp)
            return _offset(resp), resp.headers.get("Upload-Complete") == "?1"

    async def delete(self) -> None:
        async with self.session.delete(self.url, headers=self.auth, timeout=TIMEOUT) as resp:
            await _check(resp)

    async def patch(self, start: int, end: int, *, last: bool) -> int:
        headers = {
            **self.auth,
            "Upload-Offset": str(start),
            "Upload-Length": str(self.size),
            "Upload-Complete": "?1" if last else "?0",
            "Content-Length": str(end - start),
            "Content-Type": "application/offset+octet-stream",
        }
        if last:
            headers["Repr-Digest"] = self.digest
        body = _read(self.path, start, end)
        async with self.session.patch(
            self.url, data=body, headers=headers, timeout=TIMEOUT
        ) as resp:
            await _check(resp)
            return _offset(resp)


async def _check(resp: aiohttp.ClientResponse) -> None:
    if resp.ok:
        return
    message = await _message(resp)
    if resp.status == 422:
        raise _Restart(message)
    # 409 with an offset: a break the server saw differently; with Retry-After: a request
    # of ours it has not seen the end of yet. Both resolve by asking where things stand.
    retry = resp.status == 409 and (
        "Upload-Offset" in resp.headers or "Retry-After" in resp.headers
    )
    if retry or resp.status >= 500 or resp.status == 408:
        raise _Retry(f"HTTP {resp.status}: {message}")
    raise UploadError(f"the server refused the upload: HTTP {resp.status}: {message}")


async def _message(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return resp.reason or ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _offset(resp: aiohttp.ClientResponse) -> int:
    value = resp.headers.get("Upload-Offset", "")
    if not value.isdigit():
        raise UploadError(f"the server's answer has no Upload-Offset (HTTP {resp.status})")
    return int(value)


async def _read(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` of the file, a block at a time, read in a thread."""
    with path.open("rb") as source:
        source.seek(start)
        left = end - start
        while left > 0:
            block = await asyncio.to_thread(source.read, min(READ_BLOCK, left))
            if not block:
                raise UploadError(f"{path} became shorter while it was being sent")
            left -= len(block)
            yield block


@dataclass(frozen=True, slots=True)
class FromServer:
    """A job's sidecar subtitle files, from the server (it holds the user's token)."""

    session: Callable[[], aiohttp.ClientSession | None]  # the worker's, once it runs
    server: str
    auth: dict[str, str]
    job_id: str

    async def item(self) -> dict[str, Any] | None:
        session = self.session()
        assert session is not None
        url = f"{self.server}/worker/jobs/{self.job_id}/item"
        async with session.get(url, headers=self.auth) as resp:
            item = await resp.json(content_type=None) if resp.status == 200 else None
        return item if isinstance(item, dict) else None

    async def subtitle(self, source_id: str, index: int, limit: int) -> bytes:
        session = self.session()
        assert session is not None
        url = f"{self.server}/worker/jobs/{self.job_id}/subtitles/{index}"
        try:
            async with session.get(url, headers=self.auth) as resp:
                if resp.status != 200:
                    body = await resp.json(content_type=None)
                    raise Unavailable(f"the server: {body.get('message', resp.status)}")
                data = await resp.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"the server could not be asked ({type(exc).__name__})") from None
        if len(data) > limit:
            raise Unavailable(f"larger than {limit} bytes")
        return data
