"""Sources: no token in ffmpeg's command line, only the allowed origin, redirects within it,
quoted item ids, and a dropped connection picked up again."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import ALICE, PUBLIC, Env, StartApp, auth, post_job, wait_status
from gpu_host import FakeHost, start_fake
from hls_media import Rendition, jellyfin_hls
from worker_host import make_worker
from yarl import URL

from optimized_versions.config import StaticToken
from optimized_versions.jobs.models import JobStatus
from optimized_versions.keys import STORE

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
        assert "-protocol_whitelist http,tcp,crypto" in line and "-reconnect 1" in line
        assert " -f matroska " in line, "read with the demuxer the probe read it with"
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


async def test_a_source_name_that_needs_quoting_is_the_source(
    env: Env, start_app: StartApp
) -> None:
    """The relay's URL ends with the name quoted once more; the tail it gets back is
    decoded: compared so, it is the source itself (no other path is served)."""
    client = await start_app(jellyfin_url=None, tokens=STANDALONE, source_allow="127.0.0.1")
    url = f"{env.jellyfin_url}/Videos/h264/Film%20(2020)%3F.mp4?api_key={ALICE}"
    body = {"url": url, "deviceId": "d", "itemId": "h264"}
    resp = await client.post("/optimize-version", json=body, headers=auth())
    await wait_status(client, (await resp.json())["id"], "completed", token=ALICE)
    asked = {path.split("?")[0] for path in env.jellyfin.raw_paths}
    assert asked == {"/jf/Videos/h264/Film%20(2020)%3F.mp4"}


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


async def _get(session: Any, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A GET of ``url`` exactly as written (its %2F stays a %2F on the wire)."""
    async with session.get(URL(url, encoded=True), headers=headers or {}) as resp:
        return resp.status, (await resp.read()).decode(errors="replace")


async def test_the_relay_serves_the_source_and_nothing_beside_it(
    env: Env, start_app: StartApp
) -> None:
    """Any local user can reach the loopback relay: with a job's key, still only its source
    (and what its playlists name), never another path on Jellyfin."""
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    await wait_status(client, job_id, "optimizing", min_progress=0)
    me = psutil.Process()
    argv = next(p.cmdline() for p in me.children(recursive=True) if "ffmpeg" in p.name())
    source = argv[argv.index("-i") + 1]
    calls = env.jellyfin.me_calls
    for tail in ("..%2F..%2FUsers%2FMe", "..%2F..%2F..%2Fjf%2FUsers%2FMe", "stream?x=1", "Me"):
        status, text = await _get(client.session, f"{source.rsplit('/', 1)[0]}/{tail}")
        assert status == 404 and "names neither the job's source" in text, (tail, text)
    assert env.jellyfin.me_calls == calls, "Jellyfin never saw /Users/Me from the relay"
    await client.delete(f"/cancel-job/{job_id}", headers=auth())


async def test_a_worker_reads_its_jobs_source_and_nothing_else(
    env: Env, start_app: StartApp, tmp_path: Path, rendition: Rendition
) -> None:
    """/worker/jobs/{id}/source/{tail}: the tail is the source's own name, or a token the
    relay put in that job's playlist; a path beside it, a forged token or another job's
    token is 404, and Jellyfin is not asked."""
    jellyfin_hls(env, rendition, tmp_path / "hls")
    worker = await make_worker(env, start_app, tmp_path)
    client, store = worker.client, worker.client.app[STORE]
    other_id = await post_job(client, env, "hls")
    other = store.get(other_id)
    assert other is not None
    store.transition(other, JobStatus.OPTIMIZING, node="laptop")
    calls = env.jellyfin.me_calls

    async def get(job_id: str, tail: str) -> tuple[int, str]:
        url = f"{worker.base}worker/jobs/{job_id}/source/{tail}"
        return await _get(client.session, url, worker.auth())

    assert (await get(worker.job.id, "stream"))[0] == 200, "its source"
    status, text = await get(worker.job.id, "..%2F..%2FUsers%2FMe")
    assert status == 404 and "names neither the job's source" in text, text
    status, playlist = await get(other_id, "stream")
    assert status == 200 and playlist.startswith("#EXTM3U"), playlist
    (token,) = [line for line in playlist.splitlines() if line.startswith("~")]
    assert (await get(other_id, token))[0] == 200, "a token works for its own job"
    assert (await get(worker.job.id, token))[0] == 404, "not for another job"
    me = base64.urlsafe_b64encode(f"{env.jellyfin_url}/Users/Me".encode()).decode().rstrip("=")
    assert (await get(worker.job.id, f"~{me}.{'A' * 22}/Me"))[0] == 404, "nor forged"
    assert env.jellyfin.me_calls == calls, "Jellyfin never saw /Users/Me from a worker"
