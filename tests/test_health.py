"""GET /health through the real app: no token, 200 when the server can work, 503 with the
reasons when the cache folder cannot take files, the disk is below MIN_FREE_SPACE or
ffmpeg cannot run."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from conftest import Env, StartApp, auth

from optimized_versions.keys import STORE


async def test_healthy_server_answers_ok_without_a_token(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["ffmpeg"].startswith("ffmpeg version")
    assert body["cacheFreeBytes"] > 0
    hw = body["hardwareEncoding"]
    assert hw["usable"] is False and hw["backends"] == []  # this host encodes on the CPU
    assert "nvenc" in hw["reason"]
    assert resp.headers["Cache-Control"] == "no-store"


async def test_unwritable_cache_folder_is_503(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    cache = env.config.cache_dir
    # tests run as root, so permissions do not stop a write: put a file where the folder was
    shutil.rmtree(cache)
    cache.write_bytes(b"not a folder")
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unhealthy"
    assert any(p.startswith(f"CACHE_DIR {cache} is not writable") for p in body["problems"])
    cache.unlink()
    cache.mkdir()
    assert (await client.get("/health")).status == 200


async def test_low_disk_space_is_503(env: Env, start_app: StartApp) -> None:
    client = await start_app(min_free_space=2**62)
    resp = await client.get("/health")
    assert resp.status == 503
    problems = (await resp.json())["problems"]
    assert any("below MIN_FREE_SPACE" in p for p in problems), problems


async def test_ffmpeg_that_cannot_run_is_503(env: Env, start_app: StartApp, tmp_path: Path) -> None:
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    client = await start_app(ffmpeg_path=str(broken), hardware_cache=tmp_path / "hw.json")
    resp = await client.get("/health")
    assert resp.status == 503
    problems = (await resp.json())["problems"]
    assert "ffmpeg -version exited with status 3" in problems


async def test_a_full_job_store_is_503_as_every_post_is_507(env: Env, start_app: StartApp) -> None:
    """Health once said ok while DATA_DIR was full and every POST answered 507: taking a
    write lock needs no room. It now commits a write that needs fresh pages, as a job's does."""
    env.load.cpu = 99.0  # the jobs wait: only the phones' POSTs write
    client = await start_app()
    db = client.app[STORE]._db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    for n in range(200):  # until the pages it has are full
        body = {"url": env.url("h264"), "deviceId": f"p{n}", "itemId": "h264", "item": {}}
        resp = await client.post("/optimize-version", json=body, headers=auth())
        if resp.status != 201:
            break
    assert resp.status == 507, await resp.text()
    resp = await client.get("/health")
    assert resp.status == 503
    problems = (await resp.json())["problems"]
    assert any("the job store does not take writes" in p and "full" in p for p in problems)
    db.execute(f"PRAGMA max_page_count = {2 * pages}")  # room again: healthy at once
    assert (await client.get("/health")).status == 200
