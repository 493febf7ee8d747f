"""A rung's output read back and hashed, both at once: the verification (PyAV) takes a few
milliseconds, the SHA-256 as long as reading the file, so the hash runs on a thread of its
own meanwhile and a verified output is done when its hash is. A failed verification drops
the hash (the next rung writes a new file)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..catalog.profiles import Profile
from ..errors import TranscodeError
from ..media import probe
from ..media.plan import Plan
from .outcome import Outcome

DURATION_TOLERANCE = 0.02  # the output's duration may differ from the source's by 2%
HASH_CHUNK = 1024 * 1024


def no_follow(path: str, flags: int) -> int:
    """An ``opener`` that never follows a link: what a worker with the shared cache may
    leave in it is never read or written through."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def sha256_file(path: Path) -> str:
    """Blocking: run it in a thread (a job's output here, a worker's upload in nodes/)."""
    digest = hashlib.sha256()
    with open(path, "rb", opener=no_follow) as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Expected:
    """What an output must be: read back as MP4 with a video stream in one of ``codecs``,
    at least ``audio`` audio tracks, these soft subtitles, and the source's length."""

    codecs: frozenset[str]
    audio: int
    subtitles: tuple[str, ...]  # the mov_text tracks' languages, in order
    duration: float | None

    @classmethod
    def of_plan(cls, plan: Plan, duration: float | None) -> Expected:
        """A rung's output here: what its plan made."""
        return cls(
            frozenset({plan.codec}),
            len(plan.tracks.audio),
            tuple(t.language or "und" for t in plan.tracks.subtitles),
            duration,
        )

    @classmethod
    def of_report(cls, profile: Profile, outcome: Outcome, duration: float | None) -> Expected:
        """A worker host's output: what the profile allows (the codec it encodes to, or
        one it copies) and what the worker's report says of the tracks."""
        spec = profile.video
        codecs = spec.copy_codecs if outcome.backend == "copy" else (spec.codec,)
        kept = [t for t in outcome.tracks if t.get("action") in ("copy", "convert")]
        return cls(
            frozenset(codecs),
            sum(t.get("type") == "audio" for t in kept),
            tuple(str(t.get("language") or "und") for t in kept if t.get("type") == "subtitle"),
            duration,
        )


async def verified_checksum(path: Path, expected: Expected) -> str:
    """The SHA-256 of an output as expected; raises TranscodeError when it is not."""
    hashing = asyncio.ensure_future(asyncio.to_thread(sha256_file, path))
    try:
        await asyncio.to_thread(verify, path, expected)
    except BaseException:
        hashing.cancel()  # its thread ends with the file; the result is not wanted
        raise
    return await hashing


def verify(path: Path, expected: Expected) -> None:
    # the header and the streams' parameters only: the first frames' look (rotation, HDR,
    # interlacing) decides the plan of a source and says nothing here (3 ms, not 7); read
    # as MP4 alone, so that a file that is something else (a playlist naming URLs) is
    # never opened as that
    try:
        out = probe.probe(str(path), frames=False, container="mp4")
    except probe.ProbeError as exc:
        raise TranscodeError(f"the output cannot be read back as MP4: {exc}") from None
    codecs = " or ".join(sorted(expected.codecs))
    if out.video is None or out.video.codec not in expected.codecs:
        raise TranscodeError(f"the output has no {codecs} video stream")
    if len(out.audio) < expected.audio:
        raise TranscodeError(f"the output has {len(out.audio)} of {expected.audio} audio tracks")
    subtitles = tuple(s.language or "und" for s in out.subtitles if s.codec == "mov_text")
    if subtitles != expected.subtitles:
        raise TranscodeError(
            f"the output's subtitle tracks {list(subtitles)} are not the planned "
            f"{list(expected.subtitles)}"
        )
    duration = expected.duration
    off = abs(out.duration - duration) if duration and out.duration is not None else 0.0
    if duration and (out.duration is None or off > DURATION_TOLERANCE * duration):
        lasts = "?" if out.duration is None else f"{out.duration:.2f}"
        raise TranscodeError(f"the output lasts {lasts} s, the source {duration:.2f} s")
