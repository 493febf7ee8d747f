"""The installed console script as a real process, for tests that crash or kill it."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

COMMAND = str(Path(sys.executable).parent / "optimized-versions")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    base: str
    token: str
    log: Path

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": self.token, **kw.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, headers=headers, **kw) as resp,
        ):
            body = await resp.json(content_type=None) if resp.status != 204 else None
            return resp.status, body

    async def wait_for(self, job_id: str, *wanted: str, timeout: float = 60) -> dict[str, Any]:
        job: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            _, job = await self.call("GET", f"/job-status/{job_id}")
            if job.get("status") in wanted and job.get("progress", 0) > 0:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {wanted}: {job}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def serve(folder: Path, *args: str, **env: str) -> Served:
    """Start ``optimized-versions serve [args]`` (standalone) on a free port; wait until it
    answers. The token is the generated admin token (empty when tokens are configured)."""
    port = free_port()
    log = folder / f"server-{port}.log"
    environ = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(folder / "data"),
        "CACHE_DIR": str(folder / "cache"),
        "HARDWARE_CACHE": str(folder / "hardware.json"),
        **env,
    }
    environ.pop("JELLYFIN_URL", None)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            COMMAND, "serve", *args, env=environ, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(f"{base}/openapi.json") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None:
                raise AssertionError(f"the server stopped: {log.read_text()}")
            await asyncio.sleep(0.05)
    generated = folder / "data" / "admin-token"
    token = generated.read_text().strip() if generated.exists() else ""
    return Served(proc, base, token, log)
