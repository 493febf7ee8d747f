"""Faults with the installed console script as a real process: kill -9 mid-transcode, stale
ffmpeg processes from an earlier crash."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import psutil
from aiohttp.test_utils import TestServer
from conftest import ALICE, BOB, Env, FakeJellyfin, Media, StartApp, auth, post_job, wait_status
from served import serve


def _ffmpegs(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "ffmpeg" in p.name()]


async def test_kill_9_mid_transcode_then_restart(
    tmp_path: Path, media: Media, aiohttp_server: Any
) -> None:
    jellyfin = FakeJellyfin(items={"long": media.long}, trickle={"long"})
    source: TestServer = await aiohttp_server(jellyfin.app())
    server = await serve(tmp_path)
    try:
        url = str(source.make_url(f"/Videos/long/stream?api_key={ALICE}"))
        status, created = await server.call(
            "POST", "/optimize-version", json={"url": url, "deviceId": "d", "itemId": "long"}
        )
        assert status == 201
        job_id = created["id"]
        await server.wait_for(job_id, "optimizing")
        children = _ffmpegs(server.proc.pid)
        assert children, "ffmpeg runs as the server's child"
        server.proc.send_signal(signal.SIGKILL)
        await server.proc.wait()
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], "ffmpeg died with the server"
    finally:
        await server.stop()
    jellyfin.trickle.clear()
    again = await serve(tmp_path)
    try:
        done = await again.wait_for(job_id, "completed")
        assert done["progress"] == 100
        cache = sorted(p.name for p in (tmp_path / "cache").iterdir())
        assert cache == [f"{job_id}.mp4"], "no partial or orphaned file"
    finally:
        await again.stop()


async def test_a_stale_writer_from_an_earlier_run_is_ended(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    partial = cache / "0b6e2f0c-old-job.mp4.part"
    orphan = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(120)", str(partial.resolve())
    )
    unrelated = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(120)", str(tmp_path / "elsewhere.part")
    )
    server = await serve(tmp_path)
    try:
        assert await asyncio.wait_for(orphan.wait(), timeout=10) != 0
        assert unrelated.returncode is None, "only writers into the cache are ended"
        assert "left by an earlier run" in server.log.read_text()
    finally:
        await server.stop()
        unrelated.kill()
        await unrelated.wait()


async def test_jellyfin_slow_then_gone(env: Env, start_app: StartApp) -> None:
    env.jellyfin.mode = "slow"
    client = await start_app(jellyfin_timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answers = await asyncio.gather(
        *(client.get("/statistics", headers=auth(BOB)) for _ in range(50))
    )
    assert [a.status for a in answers] == [503] * 50
    assert loop.time() - started < 5, "each waited one timeout, not fifty"
    assert env.jellyfin.me_calls == 1, "fifty requests, one call: no pile-up on Jellyfin"
    assert "Jellyfin could not be reached" in (await answers[0].json())["message"]
    gone = await start_app(jellyfin_url="http://127.0.0.1:9", data_dir=env.config.data_dir)
    started = loop.time()
    resp = await gone.get("/statistics", headers=auth(BOB))
    assert resp.status == 503 and loop.time() - started < 2


async def test_ffmpeg_killed_mid_job_fails_it_cleanly(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    await wait_status(client, job_id, "optimizing", min_progress=0)
    for proc in psutil.Process().children(recursive=True):
        if "ffmpeg" in proc.name():
            proc.kill()
    job = await wait_status(client, job_id, "failed")
    assert "ffmpeg exited with code -9" in job["error"]
    assert list((env.config.cache_dir).iterdir()) == [], "no partial file"
    after = await post_job(client, env, "h264", device="other")
    await wait_status(client, after, "completed")


async def test_clients_vanishing_mid_download_leak_nothing(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    path = f"/download/{job['id']}".encode()
    fds = len(os.listdir("/proc/self/fd"))
    for n in range(30):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + ALICE.encode() + (b"\r\nRange: bytes=%d-\r\n\r\n" % (n * 1000))
        )  # fmt: skip
        await writer.drain()
        await reader.read(100)
        writer.transport.abort()  # gone without a goodbye
    await asyncio.sleep(1.0)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2, "file and socket handles were closed"
    whole = await client.get(f"/download/{job['id']}", headers=auth())
    assert whole.status == 200 and len(await whole.read()) == job["size"]


async def test_a_client_hanging_up_mid_body_leaves_no_error(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    try:
        host, port = server.base.removeprefix("http://").split(":")
        for _ in range(5):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /optimize-version HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nAuthorization: " + server.token.encode() + b"\r\nContent-Length: 900\r\n"
                b'\r\n{"url": "http://a/'
            )
            await writer.drain()
            writer.transport.abort()
        await asyncio.sleep(0.5)
        status, _ = await server.call("GET", "/statistics")
        assert status == 200, "the server carries on"
    finally:
        await server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
