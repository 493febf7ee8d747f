"""Sources: no token in ffmpeg's command line, only the allowed origin, redirects within it,
quoted item ids, and a dropped connection picked up again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psutil
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import ALICE, PUBLIC, Env, StartApp, auth, post_job, wait_status
from gpu_host import FakeHost, start_fake

from optimized_versions.config import StaticToken

STANDALONE = (StaticToken(token=ALICE, name="alice", admin=True),)


async def test_ffmpeg_never_sees_the_token(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    await wait_status(client, job_id, "optimizing", min_progress=0)
    me = psutil.Process()
    lines = [" ".join(p.cmdline()) for p in me.children(recursive=True) if "ffmpeg" in p.name()]
    assert lines, "ffmpeg runs"
    for line in lines:
        assert ALICE not in line and "api_key" not in line
        assert "-i http://127.0.0.1:" in line and "/_source/" in line
        assert "-protocol_whitelist http,tcp" in line and "-reconnect 1" in line
    await client.delete(f"/cancel-job/{job_id}", headers=auth())


async def test_hardware_rungs_get_the_relay_too(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    assert job["encoder"] == "h264_nvenc"
    runs = [argv for argv in fake.ran() if "h264_nvenc" in argv and "pipe:1" in argv]
    assert runs and ALICE not in json.dumps(fake.ran())


async def test_a_redirect_off_the_origin_is_not_followed(
    env: Env, start_app: StartApp, aiohttp_server: Any
) -> None:
    hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=env.jellyfin.items["h264"].read_bytes())

    other = web.Application()
    other.router.add_get("/{tail:.*}", elsewhere)
    evil: TestServer = await aiohttp_server(other)
    env.jellyfin.redirect["away"] = str(evil.make_url("/steal"))
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "away"), "failed")
    assert job["error"] == "cannot read the source: the source redirected to another host"
    assert hits == []


async def test_a_redirect_within_the_origin_is_followed(env: Env, start_app: StartApp) -> None:
    env.jellyfin.redirect["moved"] = f"{env.jellyfin_url}/Videos/h264/stream?api_key={ALICE}"
    client = await start_app()
    await wait_status(client, await post_job(client, env, "moved"), "completed")


async def test_standalone_sources_outside_source_allow_are_refused(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app(jellyfin_url=None, tokens=STANDALONE, source_allow="10.9.9.0/24")
    local = f"{env.jellyfin_url}/Videos/h264/stream?static=true&api_key={ALICE}"
    body = {"url": local, "deviceId": "d", "itemId": "h264"}
    resp = await client.post("/optimize-version", json=body, headers=auth())
    job = await wait_status(client, (await resp.json())["id"], "failed", token=ALICE)
    assert job["error"] == "cannot read the source: the source's host is not allowed (SOURCE_ALLOW)"
    assert "127.0.0.1" not in job["error"] and env.jellyfin.stream_requests == []
    allowed = await start_app(
        jellyfin_url=None, tokens=STANDALONE, source_allow="10.9.9.0/24, 127.0.0.1/32",
        data_dir=env.config.data_dir.with_name("data2"),
    )  # fmt: skip
    resp = await allowed.post("/optimize-version", json=body, headers=auth())
    await wait_status(allowed, (await resp.json())["id"], "completed", token=ALICE)


async def test_metadata_addresses_are_refused_always(env: Env, start_app: StartApp) -> None:
    client = await start_app(jellyfin_url=None, tokens=STANDALONE)
    body = {"url": "http://169.254.169.254/latest/meta-data/", "deviceId": "d", "itemId": "x"}
    resp = await client.post("/optimize-version", json=body, headers=auth())
    job = await wait_status(client, (await resp.json())["id"], "failed", token=ALICE)
    assert job["error"].endswith("the source's address is link-local or a metadata service")


async def test_an_item_id_cannot_reach_into_the_path_or_query(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    url = f"{PUBLIC}/Items/whatever/master.m3u8?api_key={ALICE}"
    body = {"url": url, "deviceId": "d", "itemId": "a/b?c=1#d"}
    await client.post("/optimize-version", json=body, headers=auth())
    for _ in range(100):
        if env.jellyfin.raw_paths:
            break
        await asyncio.sleep(0.05)
    assert (
        env.jellyfin.raw_paths[0]
        == "/jf/Videos/a%2Fb%3Fc=1%23d/stream?static=true&api_key=" + ALICE
    )


async def test_a_dropped_connection_is_picked_up_again(env: Env, start_app: StartApp) -> None:
    env.jellyfin.drop_once.add("long")
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "long"), "completed")
    assert job["progress"] == 100
    ranged = [r for r in env.jellyfin.stream_requests if "/long/" in r]
    assert len(ranged) >= 2, "ffmpeg asked again after the drop"
