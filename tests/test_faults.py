"""Faults with the installed console script as a real process: kill -9 mid-transcode, stale
ffmpeg processes from an earlier crash."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import psutil
from aiohttp.test_utils import TestServer
from conftest import ALICE, FakeJellyfin, Media
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
