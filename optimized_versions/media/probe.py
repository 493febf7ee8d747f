"""Probing media with PyAV (it bundles FFmpeg's libraries: no system ffprobe needed).

These functions block: call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import av.error


class ProbeError(Exception):
    """The source could not be opened or read as media."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str | None
    bit_depth: int
    bit_rate: int | None
    transfer: int = 2  # FFmpeg's AVColorTransferCharacteristic: 16 is PQ, 18 is HLG

    @property
    def hdr(self) -> bool:
        return self.transfer in (16, 18)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    index: int
    codec: str
    channels: int
    bit_rate: int | None
    language: str | None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    format: str
    duration: float | None
    bit_rate: int | None
    video: VideoInfo | None
    audio: tuple[AudioInfo, ...]

    def audio_by_index(self, index: int) -> AudioInfo | None:
        return next((a for a in self.audio if a.index == index), None)


def _seconds(value: int | None, base: Fraction | None) -> float | None:
    if value is None or base is None:
        return None
    return float(value * base)


def probe(source: str, timeout: float = 30.0) -> MediaInfo:
    """Read container and stream details of a file path or an http(s) URL."""
    try:
        with av.open(source, timeout=timeout, options={"analyzeduration": "20000000"}) as box:
            video = next(
                (
                    VideoInfo(
                        index=s.index,
                        codec=s.codec_context.name,
                        width=s.codec_context.width,
                        height=s.codec_context.height,
                        pix_fmt=s.codec_context.pix_fmt,
                        bit_depth=s.codec_context.format.components[0].bits
                        if s.codec_context.format is not None
                        else 8,
                        bit_rate=s.codec_context.bit_rate or None,
                        transfer=int(s.codec_context.color_trc or 2),
                    )
                    for s in box.streams.video
                    if s.codec_context.width  # attached cover pictures have a size too: rare
                ),
                None,
            )
            audio = tuple(
                AudioInfo(
                    index=s.index,
                    codec=s.codec_context.name,
                    channels=s.codec_context.channels,
                    bit_rate=s.codec_context.bit_rate or None,
                    language=s.metadata.get("language"),
                )
                for s in box.streams.audio
            )
            duration = box.duration / av.time_base if box.duration else None
            if duration is None and box.streams.video:
                first = box.streams.video[0]
                duration = _seconds(first.duration, first.time_base)
            return MediaInfo(
                format=box.format.name,
                duration=duration,
                bit_rate=box.bit_rate or None,
                video=video,
                audio=audio,
            )
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ProbeError(str(exc)) from None
