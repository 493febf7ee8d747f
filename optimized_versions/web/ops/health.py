"""``GET /health``: no token, for Docker's HEALTHCHECK and uptime monitors. 200 when the
server can do its work now (the job store takes writes, the cache folder takes writes and
has room, ffmpeg runs), 503 with the reasons otherwise. It also says whether hardware
encoding is usable now (a host that fell back to the CPU is healthy, but slower)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ...hardware.ladder import Hardware
from ...hardware.listing import FFmpegUnusable, ffmpeg_listing
from ...hardware.matrix import CheckKind
from ...jobs.store import JobStore
from ...keys import CONFIG, HARDWARE, STORE

routes = web.RouteTableDef()
FFMPEG_TTL = 30.0  # seconds a good `ffmpeg -version` answer is reused: /health needs no token
FFMPEG_TIMEOUT = 5.0
STORE_TTL = 5.0  # seconds a write the job store took is believed (/health needs no token)


@dataclass(slots=True)
class FfmpegCheck:
    """The last `ffmpeg -version` run; shared by concurrent health checks."""

    ok_until: float = 0.0
    version: str | None = None
    lock: asyncio.Lock | None = None

    async def run(self, binary: str) -> str | None:
        """None when ffmpeg runs, else why not."""
        if self.ok_until > time.monotonic():
            return None
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.ok_until > time.monotonic():
                return None
            problem = await self._run(binary)
            if problem is None:
                self.ok_until = time.monotonic() + FFMPEG_TTL
            return problem

    async def _run(self, binary: str) -> str | None:
        try:
            listing = await ffmpeg_listing(binary, "-version", FFMPEG_TIMEOUT)
        except FFmpegUnusable as exc:
            return str(exc)
        first = listing.splitlines()[:1]
        self.version = first[0].split(" Copyright")[0] if first else None
        return None


@dataclass(slots=True)
class StoreCheck:
    """The last write the job store took: at most one test write per STORE_TTL, however
    often /health is asked; a refused one is tried again at the next ask."""

    ok_until: float = 0.0

    def run(self, store: JobStore | None) -> str | None:
        if store is None:
            return "the job store is not open"
        if self.ok_until > time.monotonic():
            return None
        try:
            store.check_writable()
        except sqlite3.Error as exc:
            return f"the job store does not take writes: {exc}"
        self.ok_until = time.monotonic() + STORE_TTL
        return None


_FFMPEG = web.AppKey("health_ffmpeg", FfmpegCheck)
_STORE = web.AppKey("health_store", StoreCheck)


def setup(app: web.Application) -> None:
    app[_FFMPEG] = FfmpegCheck()
    app[_STORE] = StoreCheck()
    app.add_routes(routes)


def _cache_problems(request: web.Request) -> tuple[list[str], int | None]:
    config = request.app[CONFIG]
    folder = config.cache_dir
    problems: list[str] = []
    try:
        probe = folder / ".health-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        problems.append(f"CACHE_DIR {folder} is not writable: {exc.strerror or exc}")
    free: int | None = None
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        problems.append(f"CACHE_DIR {folder} cannot be read: {exc.strerror or exc}")
    if free is not None and free < config.min_free_space:
        problems.append(
            f"CACHE_DIR has {free} bytes free, below MIN_FREE_SPACE ({config.min_free_space})"
        )
    return problems, free


def hardware_encoding(hardware: Hardware) -> dict[str, Any]:
    """Which hardware backends work now (probed, device not taken out of use)."""
    try:
        matrix = hardware.matrix
    except RuntimeError:
        return {"usable": False, "backends": [], "reason": "the hardware is not probed yet"}
    working = sorted(
        {
            check.backend
            for check in matrix.checks
            if check.ok
            and check.kind is CheckKind.ENCODE
            and check.backend not in ("software", "copy")
            and not hardware.out_of_use(check.device)
        }
    )
    verdicts = [v for v in hardware.verdicts() if v["backend"] != "software"]
    reason = "; ".join(f"{v['backend']}: {v['verdict']}: {v['reason']}" for v in verdicts)
    return {
        "usable": bool(working),
        "backends": working,
        "reason": "works" if working else (reason or "no hardware backend in ENCODER_PREFERENCE"),
    }


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    problems: list[str] = []
    if store := request.app[_STORE].run(request.app.get(STORE)):
        problems.append(store)
    cache, free = _cache_problems(request)
    problems += cache
    hardware = request.app[HARDWARE]
    check = request.app[_FFMPEG]
    if ffmpeg := await check.run(hardware.binary):
        problems.append(ffmpeg)
    body: dict[str, Any] = {
        "status": "unhealthy" if problems else "ok",
        "problems": problems,
        "cacheFreeBytes": free,
        "ffmpeg": check.version,
        "hardwareEncoding": hardware_encoding(hardware),
    }
    return web.json_response(
        body, status=503 if problems else 200, headers={"Cache-Control": "no-store"}
    )
