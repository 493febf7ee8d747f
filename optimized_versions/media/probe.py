"""Probing media with PyAV (it bundles FFmpeg's libraries: no system ffprobe needed).

What a source may open, here and in ffmpeg (``plan.source_input``): over http (the relay)
http and what HLS needs of it (tcp, and crypto for AES-128 segments), nothing else (no file:,
data:, udp or rtp); a file, files alone. The probe reads no source with a demuxer that
fetches what its text names (DASH, IMF, ffconcat, SDP and RTP, RTSP, SAP); ffmpeg then
reads with the demuxer the probe found. HLS is read: every URI of a playlist names the relay
(``jellyfin/playlist.py``).

These functions block: call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.format import ContainerFormat
from av.stream import Disposition

from .look import Look, look

_NAMING = frozenset({"concat", "dash", "imf", "rtp", "rtsp", "sap", "sdp"})


def protocols(source: str) -> str:
    """The protocols a source may open (``protocol_whitelist``)."""
    return "http,tcp,crypto" if source.startswith(("http://", "https://")) else "file"


@functools.cache
def _demuxers() -> str:
    """PyAV's demuxers but those that fetch what they name (``format_whitelist``)."""
    found = (name for name in av.formats_available if ContainerFormat(name).is_input)
    return ",".join(sorted(name for name in found if not _NAMING & set(name.split(","))))


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
    field_order: str | None = None  # "progressive", "tff", "bff"; None when unknown
    rotation: int = 0  # degrees counter-clockwise a player turns the picture
    frame_rate: Fraction | None = None  # average frames per second
    mastering: bool = False  # HDR10 mastering display metadata (tonemap_vaapi needs it)
    dolby_vision: bool = False
    language: str | None = None
    title: str | None = None
    first: float | None = None  # the first frame's time stamp (seconds), as the file keeps it

    @property
    def hdr(self) -> bool:
        return self.transfer in (16, 18)

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tff", "bff")

    @property
    def dovi_only(self) -> bool:
        """Dolby Vision whose base layer is not HDR10, HLG or SDR (profile 5): shown as it
        is, it is green and purple; only the RPU reshaping (libplacebo) gets a picture."""
        return self.dolby_vision and self.transfer not in (1, 6, 14, 16, 18)

    @property
    def chroma(self) -> str:
        """ "420", "422" or "444" from the pixel format (nv12/p010 are 4:2:0)."""
        fmt = self.pix_fmt or "yuv420p"
        return next((c for c in ("422", "444", "440", "411") if c in fmt), "420")

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: a phone video turned by 90 degrees swaps them."""
        turned = self.rotation in (90, 270)
        return (self.height, self.width) if turned else (self.width, self.height)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    index: int
    codec: str
    channels: int
    bit_rate: int | None
    language: str | None
    title: str | None = None
    default: bool = False  # the container's default flag
    layout: str = ""  # FFmpeg's channel layout name: "5.1(side)", "7.1", ...


@dataclass(frozen=True, slots=True)
class SubtitleInfo:
    index: int
    codec: str  # FFmpeg's codec name: "subrip", "ass", "webvtt", "hdmv_pgs_subtitle", ...
    language: str | None
    title: str | None = None
    default: bool = False
    forced: bool = False
    external: bool = False  # a Jellyfin sidecar file, fetched before the job runs
    path: str | None = None  # the fetched sidecar file (external only)
    problem: str | None = None  # why a sidecar file could not be fetched


@dataclass(frozen=True, slots=True)
class MediaInfo:
    format: str
    duration: float | None
    bit_rate: int | None
    video: VideoInfo | None
    audio: tuple[AudioInfo, ...]
    chapters: int = 0
    subtitles: tuple[SubtitleInfo, ...] = ()
    start: float = 0.0  # the file's start (seconds): what ffmpeg's -ss counts from

    def audio_by_index(self, index: int) -> AudioInfo | None:
        return next((a for a in self.audio if a.index == index), None)


def _seconds(value: int | None, base: Fraction | None) -> float | None:
    if value is None or base is None:
        return None
    return float(value * base)


def _tag(metadata: dict[str, str], key: str) -> str | None:
    """A stream tag as players show it ("und" is no language at all)."""
    value = (metadata.get(key) or "").strip()
    return value if value and value != "und" else None


def _handler(metadata: dict[str, str]) -> str | None:
    """An MP4 track's name (its handler name), unless it is the muxer's generic one."""
    name = _tag(metadata, "handler_name")
    return None if name is None or name.endswith("Handler") else name


def probe(
    source: str, timeout: float = 30.0, *, frames: bool = True, container: str | None = None
) -> MediaInfo:
    """Read container and stream details of a file path or an http(s) URL; ``frames``:
    with a look at the first frames (``look``: rotation, HDR, interlacing); ``container``:
    read it as that format alone (no guessing from its content)."""
    options = {
        "analyzeduration": "20000000",
        "protocol_whitelist": protocols(source),
        "format_whitelist": _demuxers(),
    }
    try:
        with av.open(source, format=container, timeout=timeout, options=options) as box:
            stream = next(
                (s for s in box.streams.video if s.codec_context.width),  # not cover art
                None,
            )
            video = None
            if stream is not None:
                seen: Look = look(box, stream) if frames else Look()
                context = stream.codec_context
                rate = stream.average_rate or stream.guessed_rate
                video = VideoInfo(
                    index=stream.index,
                    codec=context.name,
                    width=context.width,
                    height=context.height,
                    pix_fmt=context.pix_fmt,
                    bit_depth=context.format.components[0].bits
                    if context.format is not None
                    else 8,
                    bit_rate=context.bit_rate or None,
                    transfer=int(context.color_trc or 2),
                    field_order=seen.field_order,
                    rotation=seen.rotation,
                    frame_rate=Fraction(rate) if rate else None,
                    mastering=seen.mastering,
                    dolby_vision=seen.dolby_vision,
                    language=_tag(stream.metadata, "language"),
                    title=_tag(stream.metadata, "title"),
                    first=_seconds(stream.start_time, stream.time_base),
                )
            audio = tuple(
                AudioInfo(
                    index=s.index,
                    codec=s.codec_context.name,
                    channels=s.codec_context.channels,
                    bit_rate=s.codec_context.bit_rate or None,
                    language=s.metadata.get("language"),
                    title=_tag(s.metadata, "title"),
                    default=bool(s.disposition & Disposition.default),
                    layout=s.codec_context.layout.name or "",
                )
                for s in box.streams.audio
            )
            subtitles = tuple(
                SubtitleInfo(
                    index=s.index,
                    codec=s.codec_context.codec.canonical_name,  # "subrip", not "srt"
                    language=_tag(s.metadata, "language"),
                    title=_tag(s.metadata, "title") or _handler(s.metadata),
                    default=bool(s.disposition & Disposition.default),
                    forced=bool(s.disposition & Disposition.forced),
                )
                for s in box.streams.subtitles
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
                chapters=len(box.chapters()),
                subtitles=subtitles,
                start=box.start_time / av.time_base if box.start_time else 0.0,
            )
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ProbeError(str(exc)) from None
