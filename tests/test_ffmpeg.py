"""The ffmpeg runner: progress, a stalled source, and stopping in steps (real ffmpeg)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest

from optimized_versions.media import ffmpeg
from optimized_versions.media.ffmpeg import FFmpegError, Progress, default_ffmpeg


def _lavfi(seconds: float, out: Path, realtime: bool = False) -> list[str]:
    pace = ["-re"] if realtime else []
    return [
        default_ffmpeg(),
        "-hide_banner",
        "-v",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.1",
        *pace,
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=160x120:rate=10:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "mp4",
        "-y",
        str(out),
    ]


async def test_progress_is_reported_to_the_end(tmp_path: Path) -> None:
    updates: list[Progress] = []
    await ffmpeg.run(_lavfi(2, tmp_path / "o.mp4"), updates.append, stall_timeout=10, stop_grace=1)
    assert updates[-1].done and updates[-1].out_time == pytest.approx(2.0, abs=0.2)
    assert updates[-1].total_size > 0


async def test_a_failing_ffmpeg_reports_its_stderr(tmp_path: Path) -> None:
    argv = [default_ffmpeg(), "-v", "error", "-i", str(tmp_path / "missing.mkv"), "-f", "null", "-"]
    with pytest.raises(FFmpegError) as caught:
        await ffmpeg.run(argv, lambda _: None, stall_timeout=10, stop_grace=1)
    assert "exited with code" in str(caught.value)
    assert any("No such file" in line for line in caught.value.stderr)


async def test_a_stalled_process_is_killed(tmp_path: Path) -> None:
    script = "import sys, time; print('progress=continue', flush=True); time.sleep(60)"
    started = asyncio.get_running_loop().time()
    with pytest.raises(FFmpegError, match=r"no progress for 0\.3 s"):
        await ffmpeg.run(
            [sys.executable, "-c", script], lambda _: None, stall_timeout=0.3, stop_grace=0.2
        )
    assert asyncio.get_running_loop().time() - started < 5


async def test_cancel_asks_ffmpeg_to_quit(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    seen = asyncio.Event()
    task = asyncio.create_task(
        ffmpeg.run(
            _lavfi(30, out, realtime=True), lambda _: seen.set(), stall_timeout=10, stop_grace=5
        )
    )
    await seen.wait()
    task.cancel()
    started = asyncio.get_running_loop().time()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started < 4, "q should stop it, not the kill"
    assert out.exists()  # ffmpeg closed its output cleanly on q


async def test_a_process_that_ignores_q_is_killed_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while True:\n"
        "    print('out_time_us=1\\nprogress=continue', flush=True); time.sleep(0.05)"
    )
    seen = asyncio.Event()
    task = asyncio.create_task(
        ffmpeg.run(
            [sys.executable, "-c", script], lambda _: seen.set(), stall_timeout=10, stop_grace=0.3
        )
    )
    await seen.wait()
    pid = int(pid_file.read_text())
    assert psutil.pid_exists(pid)
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert asyncio.get_running_loop().time() - started >= 0.3, "it waited for q first"
    assert not psutil.pid_exists(pid), "killed and reaped: not even a zombie is left"
