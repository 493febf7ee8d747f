"""The loopback relay: ffmpeg and the probe read a job's source through it.

A job's source URL carries the user's token, and ffmpeg's command line is readable by every
local user (``ps``). So ffmpeg gets ``http://127.0.0.1:<port>/_source/<key>/<name>`` instead:
a random key that lives as long as the job runs, on a listener bound to loopback only. The
relay fetches the real URL (Range passed through, so ffmpeg can seek and reconnect), applies
the source rules on every request, and follows redirects only within the source's origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
from aiohttp import web

from .rules import SourceRefused, SourceRules, origin

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_REDIRECTS = 5
_PASSED_UP = ("Range", "If-Range", "User-Agent")
_PASSED_DOWN = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag")


@dataclass(slots=True)
class Relayed:
    """A source as ffmpeg sees it, and what went wrong fetching it (for the job's error)."""

    url: str
    origin_url: str
    problem: str | None = None


def source_name(url: str) -> str:
    """The last part of the source's path, as the URL ffmpeg reads ends (its format hint)."""
    return quote(PurePosixPath(urlsplit(url).path).name or "source")


class SourceRelay:
    def __init__(
        self, rules: SourceRules, headers: dict[str, str] | None = None, patience: float = 0.0
    ) -> None:
        self._rules = rules
        self._headers = headers or {}  # sent upstream too (a worker host's token)
        # seconds to keep trying an upstream that refuses connections (a worker host's
        # server restarting) before the reader is told it failed
        self._patience = patience
        self._sources: dict[str, Relayed] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/_source/{key}/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=60)
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.contextmanager
    def serve(self, url: str) -> Iterator[Relayed]:
        """The loopback URL for ``url`` while the block runs."""
        key = secrets.token_urlsafe(24)
        relayed = self._sources[key] = Relayed(
            f"http://127.0.0.1:{self.port}/_source/{key}/{source_name(url)}", url
        )
        try:
            yield relayed
        finally:
            del self._sources[key]

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        relayed = self._sources.get(request.match_info["key"])
        if relayed is None:
            raise web.HTTPNotFound()
        return await self.forward(relayed, request, request.match_info["tail"])

    async def forward(
        self, relayed: Relayed, request: web.Request, tail: str
    ) -> web.StreamResponse:
        """Answer ``request`` with the source (or, for a ``tail`` other than its name, a file
        beside it: an HLS segment), fetched under the source rules. Worker hosts read their
        job's source through this too (``web.workers``)."""
        target = relayed.origin_url
        if tail != relayed.url.rsplit("/", 1)[1] or request.query_string:  # an HLS segment
            target = urljoin(relayed.origin_url, tail)
            target += f"?{request.query_string}" if request.query_string else ""
        headers = {name: request.headers[name] for name in _PASSED_UP if name in request.headers}
        try:
            upstream = await self._open_patiently(
                relayed.origin_url, target, headers, request.method
            )
        except SourceRefused as exc:
            relayed.problem = str(exc)
            return web.Response(status=403)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            relayed.problem = f"the media server could not be reached ({type(exc).__name__})"
            return web.Response(status=502)
        async with upstream:
            if upstream.status >= 400:
                relayed.problem = f"the media server answered HTTP {upstream.status}"
            response = web.StreamResponse(status=upstream.status)
            for name in _PASSED_DOWN:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            if request.method != "HEAD":
                await self._pass_body(relayed, upstream, request, response)
            return response

    @staticmethod
    async def _pass_body(
        relayed: Relayed,
        upstream: aiohttp.ClientResponse,
        request: web.Request,
        response: web.StreamResponse,
    ) -> None:
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                try:
                    await response.write(chunk)
                except ConnectionError:  # the reader has what it needs and hung up
                    return
        except (aiohttp.ClientError, TimeoutError):
            # the source dropped: so does this answer, and ffmpeg reconnects with a Range
            relayed.problem = "the connection to the media server dropped"
            if request.transport is not None:
                request.transport.close()
            return
        await response.write_eof()

    async def _open_patiently(
        self, first: str, url: str, headers: dict[str, str], method: str
    ) -> aiohttp.ClientResponse:
        deadline = asyncio.get_running_loop().time() + self._patience
        while True:
            try:
                resp = await self._open(first, url, headers, method)
            except (aiohttp.ClientConnectionError, TimeoutError):
                if asyncio.get_running_loop().time() >= deadline:
                    raise
            else:
                if resp.status < 500 or asyncio.get_running_loop().time() >= deadline:
                    return resp
                resp.release()  # a server on its way down or up
            await asyncio.sleep(0.5)

    async def _open(
        self, first: str, url: str, headers: dict[str, str], method: str
    ) -> aiohttp.ClientResponse:
        assert self._session is not None
        for _ in range(MAX_REDIRECTS + 1):
            if origin(url) != origin(first):
                raise SourceRefused("the source redirected to another host")
            await self._rules.check(url)
            resp = await self._session.request(
                method, url, headers={**self._headers, **headers}, allow_redirects=False
            )
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp
            resp.release()
            url = urljoin(url, location)
        raise SourceRefused("the source redirected too many times")
