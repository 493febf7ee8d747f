"""Running ffmpeg: one subprocess per job, progress from ``-progress pipe:1``, stopped in steps."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STDERR_LINES = 20
_PR_SET_PDEATHSIG = 1
# looked up once here: a forked child must not load libraries before it execs
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
# util-linux's setpriv sets the parent-death signal and execs ffmpeg (the setting survives
# exec). A preexec_fn would do it too, but makes Python fork() the whole server instead of
# vfork(): 8 ms at 60 MB, 25-35 ms at 150 MB, on every ffmpeg start.
_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None


def default_ffmpeg() -> str:
    """The static ffmpeg that ships in the imageio-ffmpeg wheel."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def resolve_ffmpeg(configured: str | None) -> str:
    return configured or default_ffmpeg()


@dataclass(frozen=True, slots=True)
class Progress:
    out_time: float  # seconds of output written
    speed: float | None  # x realtime
    total_size: int  # bytes written so far
    done: bool
    frames: int = 0


class FFmpegError(Exception):
    def __init__(self, message: str, stderr: list[str]) -> None:
        super().__init__(message)
        self.stderr = stderr


def _parse_block(fields: dict[str, str]) -> Progress:
    def number(key: str) -> float | None:
        try:
            return float(fields.get(key, "").rstrip("x"))
        except ValueError:
            return None

    out_us = number("out_time_us") or number("out_time_ms") or 0.0
    return Progress(
        out_time=max(0.0, out_us / 1_000_000),
        speed=number("speed"),
        total_size=int(number("total_size") or 0),
        done=fields.get("progress") == "end",
        frames=int(number("frame") or 0),
    )


async def _follow_progress(
    stdout: asyncio.StreamReader,
    on_progress: Callable[[Progress], None],
    stall_timeout: float,
    clock: Callable[[], float],
) -> None:
    fields: dict[str, str] = {}
    last_mark, last_advance = (-1.0, -1), clock()
    while True:
        remaining = stall_timeout - (clock() - last_advance)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
            # that arrives as the read completes, and a cancelled job would run on.
            async with asyncio.timeout(max(remaining, 0.01)):
                line = await stdout.readline()
        except TimeoutError:
            raise FFmpegError(
                f"ffmpeg made no progress for {stall_timeout:g} s (source stalled?)", []
            ) from None
        if not line:
            return
        key, _, value = line.decode("utf-8", "replace").strip().partition("=")
        fields[key] = value
        if key != "progress":
            continue
        update = _parse_block(fields)
        fields = {}
        mark = (update.out_time, update.total_size)
        if mark > last_mark:
            last_mark, last_advance = mark, clock()
        on_progress(update)


async def _collect(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)


async def stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """Ask ffmpeg to quit (``q`` on stdin), then kill it after ``grace`` seconds."""
    if proc.returncode is not None:
        return
    try:
        if proc.stdin is not None:
            proc.stdin.write(b"q")
            await proc.stdin.drain()
        async with asyncio.timeout(grace):
            await proc.wait()
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run(
    argv: list[str],
    on_progress: Callable[[Progress], None],
    *,
    stall_timeout: float,
    stop_grace: float,
    clock: Callable[[], float] = time.monotonic,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Run one ffmpeg command to the end: stderr's last lines, or raise FFmpegError with
    them. ``env`` adds to this process's environment (a backend's CUDA_DEVICE_ORDER)."""
    proc = await asyncio.create_subprocess_exec(
        *([_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else argv),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=None if _SETPRIV else die_with_parent,
        env={**os.environ, **env} if env else None,
    )
    assert proc.stdout is not None and proc.stderr is not None
    tail: deque[str] = deque(maxlen=STDERR_LINES)
    reader = asyncio.create_task(_collect(proc.stderr, tail))
    try:
        await _follow_progress(proc.stdout, on_progress, stall_timeout, clock)
        code = await proc.wait()
    except BaseException as exc:
        await stop(proc, stop_grace)
        if isinstance(exc, FFmpegError):
            exc.stderr = list(tail)
        raise
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(stop_grace):
                await reader
    if code != 0:
        raise FFmpegError(f"ffmpeg exited with code {code}", list(tail))
    return list(tail)


def die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the server dies, even by
    ``kill -9`` (Linux's PR_SET_PDEATHSIG); elsewhere start-up ends stale ones."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
