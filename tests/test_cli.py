"""The installed command: configuration errors, a real start, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from conftest import ALICE, Env, FakeJellyfin, Media, StartApp, auth
from served import COMMAND, free_port


def test_a_bad_value_stops_the_start_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "MAX_CONCURRENT_JOBS": "lots", "DATA_DIR": str(tmp_path)}
    result = subprocess.run([COMMAND, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "MAX_CONCURRENT_JOBS='lots'" in result.stderr and "whole number" in result.stderr


async def _wait_status(
    session: aiohttp.ClientSession, url: str, token: str, wanted: str
) -> dict[str, Any]:
    for _ in range(400):
        async with session.get(url, headers={"Authorization": token}) as resp:
            job: dict[str, Any] = await resp.json()
        if job["status"] == wanted and job["progress"] > 0:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {wanted}: {job}")


async def test_serve_then_sigterm_puts_the_running_job_back(
    tmp_path: Path, media: Media, aiohttp_server: Any
) -> None:
    jellyfin = FakeJellyfin(items={"long": media.long}, trickle={"long"})
    source: TestServer = await aiohttp_server(jellyfin.app())
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(tmp_path / "data"),
        "CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("JELLYFIN_URL", None)
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as out:  # a file, not a pipe nobody drains while it runs
        proc = await asyncio.create_subprocess_exec(COMMAND, "serve", env=env, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{base}/openapi.json") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            token = (tmp_path / "data" / "admin-token").read_text().strip()
            body = {
                "url": str(source.make_url(f"/Videos/long/stream?api_key={ALICE}")),
                "deviceId": "d\nFORGED device line",
                "itemId": "long",
            }
            async with session.get(f"{base}/statistics%0aFORGED%20path%20line") as resp:
                assert resp.status == 404
            async with session.post(
                f"{base}/optimize-version", json=body, headers={"Authorization": token}
            ) as resp:
                assert resp.status == 201
                job_id = (await resp.json())["id"]
            await _wait_status(session, f"{base}/job-status/{job_id}", token, "optimizing")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = log_file.read_text()
    assert str((tmp_path / "data" / "admin-token").resolve()) in log
    assert ALICE not in log and token not in log
    assert f"job {job_id}: optimizing -> queued" in log
    assert not [line for line in log.splitlines() if line.startswith("FORGED")], log
    assert "d\\x0aFORGED device line" in log and "/statistics\\x0aFORGED path line" in log
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        assert db.execute("SELECT status FROM jobs").fetchall() == [("queued",)]
    assert list((tmp_path / "cache").iterdir()) == []


def test_probe_names_every_backend_in_text_and_json(tmp_path: Path, hardware_cache: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "HARDWARE_CACHE": str(hardware_cache)}
    text = subprocess.run(
        [COMMAND, "probe"], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for name in ("nvenc", "qsv", "vaapi"):
        assert f"\n{name}: not tried: " in text or text.startswith(f"{name}: not tried: "), text
    assert "software: works: h264 on cpu" in text
    assert any(
        line.split()[:4] == ["DEVICE", "BACKEND", "TEST", "CODEC"]
        for line in text.split("\n")
        if line
    )
    cached = subprocess.run(
        [COMMAND, "probe", "--json", "--cached"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    body = json.loads(cached)
    assert [v["backend"] for v in body["backends"]] == ["nvenc", "qsv", "vaapi", "software"]
    nvenc = body["backends"][0]
    assert nvenc["verdict"] == "not tried" and nvenc["reason"].startswith("no NVIDIA GPU (")


async def test_probe_json_is_get_hardware_without_the_live_load(
    env: Env, start_app: StartApp, hardware_cache: Path
) -> None:
    client = await start_app()
    served = await (await client.get("/hardware", headers=auth())).json()
    printed = json.loads(
        subprocess.run(
            [COMMAND, "probe", "--json", "--cached"],
            env={**os.environ, "HARDWARE_CACHE": str(hardware_cache)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    del served["load"]
    assert printed == served


def test_an_unusable_data_folder_stops_the_start_with_a_message(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "DATA_DIR": str(blocker / "data"), "CACHE_DIR": str(tmp_path / "c")}
    env.pop("JELLYFIN_URL", None)
    result = subprocess.run([COMMAND, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"DATA_DIR {blocker / 'data'} is not usable: Not a directory" in result.stderr
    assert "Traceback" not in result.stderr
