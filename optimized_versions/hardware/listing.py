"""What the ffmpeg binary says of itself: ``-version``, ``-encoders``, ``-filters``, run with
a time limit (the probe at start, and GET /health)."""

from __future__ import annotations

import asyncio


class FFmpegUnusable(Exception):
    """The ffmpeg binary cannot be run, does not answer in time, or fails."""


async def ffmpeg_listing(binary: str, what: str, timeout: float) -> str:
    """``ffmpeg -hide_banner <what>`` (``-version``, ``-encoders``...), killed after
    ``timeout`` seconds: a hung FFMPEG_PATH must not hang the start (nor GET /health,
    which runs ``-version`` through here too)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-hide_banner",
            what,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        raise FFmpegUnusable(f"ffmpeg cannot be run ({binary}): {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        raise FFmpegUnusable(f"ffmpeg did not answer {what} within {timeout:g} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise FFmpegUnusable(f"ffmpeg {what} exited with status {proc.returncode}")
    return out.decode("utf-8", "replace")


def names(listing: str) -> frozenset[str]:
    """Encoder or filter names from ``-encoders``/``-filters`` output."""
    names = set()
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(" ="):
            names.add(parts[1])
    return frozenset(names)
