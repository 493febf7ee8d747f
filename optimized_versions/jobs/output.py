"""A rung's output read back and hashed, both at once: the verification (PyAV) takes a few
milliseconds, the SHA-256 as long as reading the file, so the hash runs on a thread of its
own meanwhile and a verified output is done when its hash is. A failed verification drops
the hash (the next rung writes a new file)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from ..errors import TranscodeError
from ..media import probe
from ..media.plan import Plan

DURATION_TOLERANCE = 0.02  # the output's duration may differ from the source's by 2%
HASH_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    """Blocking: run it in a thread (a job's output here, a worker's upload in nodes/)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def verified_checksum(path: Path, plan: Plan, duration: float | None) -> str:
    """The SHA-256 of an output that matches its plan; raises TranscodeError when not."""
    hashing = asyncio.ensure_future(asyncio.to_thread(sha256_file, path))
    try:
        await asyncio.to_thread(verify, path, plan, duration)
    except BaseException:
        hashing.cancel()  # its thread ends with the file; the result is not wanted
        raise
    return await hashing


def verify(path: Path, plan: Plan, duration: float | None) -> None:
    # the header and the streams' parameters only: the first frames' look (rotation, HDR,
    # interlacing) decides the plan of a source and says nothing here (3 ms, not 7)
    try:
        out = probe.probe(str(path), frames=False)
    except probe.ProbeError as exc:
        raise TranscodeError(f"the output cannot be read back: {exc}") from None
    if out.video is None or out.video.codec != plan.codec:
        raise TranscodeError(f"the output has no {plan.codec} video stream")
    if len(out.audio) < len(plan.tracks.audio):
        raise TranscodeError(
            f"the output has {len(out.audio)} of {len(plan.tracks.audio)} audio tracks"
        )
    subtitles = [s.language or "und" for s in out.subtitles if s.codec == "mov_text"]
    planned = [t.language or "und" for t in plan.tracks.subtitles]
    if subtitles != planned:
        raise TranscodeError(
            f"the output's subtitle tracks {subtitles} are not the planned {planned}"
        )
    off = abs(out.duration - duration) if duration and out.duration is not None else 0.0
    if duration and off > DURATION_TOLERANCE * duration:
        raise TranscodeError(f"the output lasts {out.duration:.2f} s, the source {duration:.2f} s")
