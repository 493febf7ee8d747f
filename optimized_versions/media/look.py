"""A look at the first decoded frames: what the container's header does not say.

Rotation (the display matrix), HDR mastering data and Dolby Vision RPUs travel with the
frames, and a stream whose field order is unknown may still be interlaced: a short
``idet`` pass over its first frames settles it. Blocking: runs inside ``probe.probe``.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import av.error
from av.container import InputContainer
from av.filter import Graph
from av.sidedata.sidedata import Type
from av.video.stream import VideoStream

# FFmpeg's AVFieldOrder: TT and TB code the top field first, BB and BT the bottom one
_FIELD_ORDER = {1: "progressive", 2: "tff", 3: "bff", 4: "tff", 5: "bff"}
# Codecs that can carry interlaced pictures: only these get an idet look when unsure
INTERLACE_CAPABLE = frozenset({"h264", "hevc", "mpeg2video", "mpeg1video", "vc1", "mpeg4"})
IDET_FRAMES = 60  # 2 s of 30i: enough for idet's multi-frame verdict, cheap over HTTP
MAX_PACKETS = 600  # give up on a stream that yields no picture from this many packets
_DOVI = frozenset({Type.DOVI_METADATA, Type.DOVI_RPU_BUFFER})
# MP4 sample entries of Dolby Vision streams without a backward-compatible base layer
DOVI_ONLY_TAGS = frozenset({"dvh1", "dvhe", "dav1", "dvav", "dva1"})


@dataclass(frozen=True, slots=True)
class Look:
    field_order: str | None = None  # "progressive", "tff", "bff"; None when unknown
    rotation: int = 0  # degrees counter-clockwise a player turns the picture: 0/90/180/270
    mastering: bool = False  # HDR10 mastering display metadata present
    dolby_vision: bool = False  # Dolby Vision RPUs (or a Dolby Vision sample entry)


def _rotation(degrees: float) -> int:
    return round(degrees / 90.0) % 4 * 90


def _idet_verdict(metadata: dict[str, str]) -> str | None:
    counts = {
        kind: float(metadata.get(f"lavfi.idet.multiple.{kind}", 0))
        for kind in ("tff", "bff", "progressive")
    }
    interlaced = counts["tff"] + counts["bff"]
    if interlaced + counts["progressive"] == 0:
        return None
    if interlaced <= counts["progressive"]:
        return "progressive"
    return "tff" if counts["tff"] >= counts["bff"] else "bff"


def _first(frame: av.VideoFrame, tag: str) -> tuple[int, bool, bool]:
    """Rotation, mastering metadata and Dolby Vision from the first frame's side data."""
    kinds = {getattr(data, "type", None) for data in frame.side_data}  # SideData objects
    dovi = tag in DOVI_ONLY_TAGS or bool(kinds & _DOVI)
    return _rotation(frame.rotation), Type.MASTERING_DISPLAY_METADATA in kinds, dovi


class _Idet:
    """FFmpeg's interlace detector over decoded frames; its running verdict."""

    def __init__(self, stream: VideoStream) -> None:
        self.graph = Graph()
        nodes = (self.graph.add_buffer(template=stream), self.graph.add("idet"))
        self.graph.link_nodes(*nodes, self.graph.add("buffersink")).configure()
        self.metadata: dict[str, str] = {}
        self.frames = 0

    def push(self, frame: av.VideoFrame) -> None:
        self.frames += 1
        self.graph.vpush(frame)
        while True:
            try:
                self.metadata = dict(self.graph.vpull().metadata) or self.metadata
            except (av.error.BlockingIOError, av.error.EOFError):
                return


def look(box: InputContainer, stream: VideoStream) -> Look:
    """Decode the first frame (and, when the field order is unknown on a codec that can be
    interlaced, up to ``IDET_FRAMES`` through ``idet``)."""
    context = stream.codec_context
    field_order = _FIELD_ORDER.get(int(context.field_order or 0))
    tag = str(context.codec_tag or "").lower()
    first: tuple[int, bool, bool] = (0, False, tag in DOVI_ONLY_TAGS)
    idet = _Idet(stream) if field_order is None and context.name in INTERLACE_CAPABLE else None
    seen = 0
    try:
        for packets, packet in enumerate(box.demux(stream)):
            if packets >= MAX_PACKETS:
                break
            for frame in packet.decode():
                seen += 1
                if seen == 1:
                    first = _first(frame, tag)
                if idet is None:
                    return Look(field_order, *first)
                idet.push(frame)
            if idet is not None and idet.frames >= IDET_FRAMES:
                break
    except (av.error.FFmpegError, ValueError):
        pass  # what was seen so far stands; the transcode will meet any real damage
    if idet is not None:
        field_order = _idet_verdict(idet.metadata)
    return Look(field_order, *first)
