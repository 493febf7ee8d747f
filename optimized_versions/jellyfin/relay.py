"""The loopback relay: ffmpeg and the probe read a job's source through it.

A job's source URL carries the user's token, and ffmpeg's command line is readable by every
local user (``ps``). So ffmpeg gets ``http://127.0.0.1:<port>/_source/<key>/<name>`` instead:
a random key that lives as long as the job runs, on a listener bound to loopback only. The
relay fetches the real URL (Range passed through, so ffmpeg can seek and reconnect), applies
the source rules on every request, and follows redirects only within the URL's origin.

The path after the key names the source (its name, as the URL ffmpeg got ends) or a URI of
one of its playlists, and nothing else: an HLS playlist names what the demuxer fetches by
itself, so every answer's first bytes are sniffed and a playlist (``playlist.py``) is read
whole and passed on with each URI resolved against the playlist's real URL, checked by the
rules (one refused: the playlist is refused whole) and replaced by ``~<token>/<its last
path part>`` (``../~<token>/...`` in a playlist that is itself at a token), where the token
is the URL sealed with this relay's secret (random at each start) and bound to the source
and the relayed's scope (the key; a worker host's job on the server: ``web.workers``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote, unquote, urljoin, urlsplit

import aiohttp
from aiohttp import web

from ..errors import NotFound
from . import playlist
from .rules import SourceRefused, SourceRules, origin

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_REDIRECTS = 5
_PASSED_UP = ("Range", "If-Range", "User-Agent")
_PASSED_DOWN = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag")


@dataclass(slots=True)
class Relayed:
    """A source as ffmpeg sees it, and what went wrong fetching it (for the job's error)."""

    url: str  # what ffmpeg reads, ending with the source's name
    origin_url: str
    scope: str = ""  # what its tokens are bound to besides the source (the key, the job)
    problem: str | None = None

    @property
    def name(self) -> str:
        """The tail that names the source itself, decoded as aiohttp's match_info is."""
        return unquote(self.url.rsplit("/", 1)[1])


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
        self._secret = secrets.token_bytes(32)  # seals the URLs its playlists name
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
            f"http://127.0.0.1:{self.port}/_source/{key}/{source_name(url)}", url, key
        )
        try:
            yield relayed
        finally:
            del self._sources[key]

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        relayed = self._sources.get(request.match_info["key"])
        if relayed is None:
            raise web.HTTPNotFound()
        try:
            return await self.forward(relayed, request, request.match_info["tail"])
        except NotFound as exc:
            return web.Response(status=404, text=exc.message)

    async def forward(
        self, relayed: Relayed, request: web.Request, tail: str
    ) -> web.StreamResponse:
        """Answer ``request`` with the source, or with what a token in ``tail`` names,
        fetched under the source rules (a playlist rewritten); NotFound for any other
        ``tail``. Worker hosts read their job's source through this too (``web.workers``)."""
        target, at_token = self._target(relayed, tail, request.query_string)
        headers = {name: request.headers[name] for name in _PASSED_UP if name in request.headers}
        try:
            upstream = await self._open_patiently(target, headers, request.method)
        except SourceRefused as exc:
            relayed.problem = str(exc)
            return web.Response(status=403)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            relayed.problem = f"the media server could not be reached ({type(exc).__name__})"
            return web.Response(status=502)
        async with upstream:
            if upstream.status >= 400:
                relayed.problem = f"the media server answered HTTP {upstream.status}"
            head = b""
            if request.method != "HEAD" and upstream.status < 300:
                try:
                    head = await _sniff(upstream)
                    if playlist.begins(head):
                        return await self._playlist(relayed, upstream, head, at_token)
                except (aiohttp.ClientError, TimeoutError):
                    relayed.problem = "the connection to the media server dropped"
                    return web.Response(status=502)
            response = web.StreamResponse(status=upstream.status)
            for name in _PASSED_DOWN:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            if request.method != "HEAD":
                await self._pass_body(relayed, upstream, request, response, head)
            return response

    def _target(self, relayed: Relayed, tail: str, query: str) -> tuple[str, bool]:
        """The URL ``tail`` names, and whether it names it by a token."""
        if tail == relayed.name and not query:
            return relayed.origin_url, False
        token, slash, _ = tail.partition("/")
        data, dot, mac = token.removeprefix("~").partition(".")
        sealed = token.startswith("~") and bool(slash and dot) and not query
        if sealed and hmac.compare_digest(mac.encode(), self._mac(relayed, data).encode()):
            return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode(), True
        raise NotFound("the path names neither the job's source nor a URI its playlists name")

    def _mac(self, relayed: Relayed, data: str) -> str:
        message = "\n".join((relayed.scope, relayed.origin_url, data)).encode()
        return _b64(hmac.digest(self._secret, message, hashlib.sha256)[:16])

    def _token(self, relayed: Relayed, url: str) -> str:
        """``~<url>.<seal>/<url's last path part>``: ffmpeg's HLS demuxer checks that a
        segment's URL ends with an extension its format has."""
        data = _b64(url.encode())
        name = quote(unquote(PurePosixPath(urlsplit(url).path).name), safe="")
        return f"~{data}.{self._mac(relayed, data)}/{name if name.strip('.') else '_'}"

    async def _playlist(
        self, relayed: Relayed, upstream: aiohttp.ClientResponse, head: bytes, at_token: bool
    ) -> web.Response:
        """The playlist, whole, each URI in it checked and replaced by a token."""
        body = head
        while len(body) <= playlist.MAX_BYTES and (more := await upstream.content.read(CHUNK)):
            body += more
        if len(body) > playlist.MAX_BYTES:
            relayed.problem = f"its playlist is larger than {playlist.MAX_BYTES >> 20} MiB"
            return web.Response(status=502)
        base = str(upstream.url)  # after the redirects followed
        named: dict[tuple[str, str, int], str] = {}  # a URL of each origin named

        def token(uri: str) -> str:
            url = urljoin(base, uri)
            named[origin(url)] = url
            return ("../" if at_token else "") + self._token(relayed, url)

        try:
            text = playlist.rewrite(body.decode(errors="replace"), token)
            for url in named.values():  # the rules read a URL's scheme, host and port alone
                await self._rules.check(url)
        except (SourceRefused, ValueError) as exc:  # ValueError: not a URL (a bad port)
            why = exc if isinstance(exc, SourceRefused) else "one is not a URL"
            relayed.problem = f"its playlist names a URI the rules refuse: {why}"
            return web.Response(status=403)
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    @staticmethod
    async def _pass_body(
        relayed: Relayed,
        upstream: aiohttp.ClientResponse,
        request: web.Request,
        response: web.StreamResponse,
        head: bytes,
    ) -> None:
        try:
            async for chunk in _chunks(head, upstream):
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
        self, url: str, headers: dict[str, str], method: str
    ) -> aiohttp.ClientResponse:
        deadline = asyncio.get_running_loop().time() + self._patience
        while True:
            try:
                resp = await self._open(url, headers, method)
            except (aiohttp.ClientConnectionError, TimeoutError):
                if asyncio.get_running_loop().time() >= deadline:
                    raise
            else:
                if resp.status < 500 or asyncio.get_running_loop().time() >= deadline:
                    return resp
                resp.release()  # a server on its way down or up
            await asyncio.sleep(0.5)

    async def _open(self, url: str, headers: dict[str, str], method: str) -> aiohttp.ClientResponse:
        assert self._session is not None
        first = url
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def _sniff(upstream: aiohttp.ClientResponse) -> bytes:
    """The first bytes of the answer, enough to tell a playlist."""
    head = b""
    while len(head) < playlist.SNIFF:
        more = await upstream.content.read(playlist.SNIFF - len(head))
        if not more:
            break
        head += more
    return head


async def _chunks(head: bytes, upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The answer's body: the bytes already sniffed, then the rest as it comes."""
    if head:
        yield head
    async for chunk in upstream.content.iter_chunked(CHUNK):
        yield chunk
