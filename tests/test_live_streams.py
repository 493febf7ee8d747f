"""The dashboard's live stream (``GET /live``) through the real app: it ends with its user's
token, and one session cannot hold more than LIVE_STREAMS of them open."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

from aiohttp import ClientResponse, ClientSession, CookieJar
from conftest import ADMIN, ALICE, BOB, Env, StartApp, auth, post_job
from web_helpers import browser_sign_in, sign_in

from optimized_versions.web.dashboard.session_store import SESSIONS


async def _events(stream: ClientResponse, seconds: float) -> tuple[list[str], bool]:
    """The data of the events the stream sends within ``seconds``, and whether it ended."""
    data: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(stream.content.readline(), left)
        except TimeoutError:
            return data, False
        if not line:
            return data, True
        if line.startswith(b"data:"):
            data.append(line.decode())
    return data, False


async def _first_update(stream: ClientResponse) -> None:
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    while not (await stream.content.readline()).startswith(b"data:"):
        pass


async def test_an_open_stream_ends_once_jellyfin_revokes_the_token(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app(auth_cache_ttl=0.5)  # Jellyfin asked again every half second
    assert (await sign_in(client, token=ADMIN)).status == 303
    async with client.get("/live") as stream:
        await _first_update(stream)
        env.jellyfin.revoked.add(ADMIN)
        while (await client.get("/statistics", headers=auth(ADMIN))).status != 401:
            await asyncio.sleep(0.1)  # the API refuses the token now
        job = await post_job(client, env, "h264", token=ALICE)  # one the admin would see
        data, ended = await _events(stream, 5.0)
    assert ended, "the stream went on after its token was revoked"
    assert not any(job in d for d in data), "a job was pushed after the token was revoked"
    assert len(client.app[SESSIONS]) == 0, "the session ends with its token"
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_one_session_holds_at_most_live_streams_open(start_app: StartApp) -> None:
    client = await start_app(live_streams=2)
    runner = client.server.runner  # as `serve` runs it: a handler whose client left is not
    assert runner is not None and runner.server is not None  # cancelled (TestServer's is)
    runner.server.handler_cancellation = False
    assert (await sign_in(client, token=ALICE)).status == 303
    async with AsyncExitStack() as held:
        streams = [await held.enter_async_context(client.get("/live")) for _ in range(2)]
        for stream in streams:
            await _first_update(stream)
        extra = await client.get("/live")
        assert extra.status == 429
        body = await extra.json()
        assert "2 live streams" in body["message"] and "LIVE_STREAMS" in body["message"]
        assert (await client.get("/live.json")).status == 200  # what the page falls back to
        bob = await held.enter_async_context(ClientSession(cookie_jar=CookieJar(unsafe=True)))
        await browser_sign_in(bob, client.make_url("/"), BOB)
        async with bob.get(client.make_url("/live")) as theirs:
            assert theirs.status == 200, "another session has places of its own"
        streams[0].close()  # a tab closed: its place is free within a tick
        deadline = time.monotonic() + 5.0
        while (again := await client.get("/live")).status == 429:
            assert time.monotonic() < deadline, "a closed stream kept its place"
            await asyncio.sleep(0.2)
        assert again.status == 200
        again.close()
