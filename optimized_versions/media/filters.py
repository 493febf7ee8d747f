"""The video filter chain of an encode, in Jellyfin's order: deinterlace, scale, tone-map,
pixel format, upload.

On a hardware-decode rung every step is the backend's device filter (``decode`` in its
YAML); otherwise the frames are deinterlaced, scaled and tone-mapped in system memory
and handed to the encoder (uploaded where the backend needs it). Scaling comes before
tone-mapping: tone-mapping is per pixel, and a 4K picture has four times the pixels of
the 1080p one it becomes (12 frames: 1.62 s tone-map-then-scale, 0.54 s the other way).
"""

from __future__ import annotations

from ..catalog.backends import Backend, Decode
from ..catalog.device import Device
from .probe import VideoInfo

# HDR (PQ or HLG) to SDR BT.709 on the CPU, for backends without a tone-map filter of their own.
SOFTWARE_TONEMAP = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"
)
# Dolby Vision without an HDR10 base layer (profile 5): only the RPU's reshaping gives the
# real picture; libplacebo applies it (Vulkan), scales and tone-maps in one step.
DOVI_TONEMAP = (
    "libplacebo=w={width}:h={height}:tonemapping=bt.2390:peak_detect=0:colorspace=bt709:"
    "color_primaries=bt709:color_trc=bt709:range=tv:format={pix_fmt}"
)
TRANSFERS = {16: "pq", 18: "hlg"}  # FFmpeg's AVColorTransferCharacteristic


def hw_decodable(video: VideoInfo) -> bool:
    """Whether any GPU decoder (and its filters) can take this stream as it is: 4:2:0 only
    (4:2:2/4:4:4 need the newest chips), no 10-bit H.264 (Hi10P has no hardware decoder),
    no rotation (autorotate works on system-memory frames), no Dolby Vision profile 5
    (the RPU is applied to system-memory frames)."""
    return (
        video.chroma == "420"
        and video.bit_depth <= 10
        and not (video.codec == "h264" and video.bit_depth > 8)
        and video.rotation == 0
        and not video.dovi_only
    )


def device_tonemaps(decode: Decode, device: Device, video: VideoInfo) -> bool:
    """Whether the backend's device tone-mapper takes this source on this device."""
    when = decode.tonemap_when
    return (
        decode.tonemap is not None
        and TRANSFERS.get(video.transfer, "") in when.transfers
        and (not when.vendors or device.vendor in when.vendors)
        and (video.mastering or not when.mastering)
    )


def filter_names(chain: str) -> set[str]:
    return {part.split("=", 1)[0] for part in chain.split(",") if part}


def video_chain(
    backend: Backend,
    *,
    hw_decode: bool,
    deinterlace: bool,
    scale: bool,
    tonemap: bool,
    dovi: bool,
) -> list[str]:
    """The filters (as templates) for one encode."""
    if hw_decode:
        decode = backend.decode
        assert decode is not None
        chain = [decode.deinterlace] if deinterlace and decode.deinterlace else []
        if tonemap and decode.tonemap:
            return [*chain, decode.tonemap]  # scales first, then tone-maps
        return [*chain, decode.scale if scale else decode.format]
    chain = [backend.deinterlace] if deinterlace else []
    if dovi:
        chain.append(DOVI_TONEMAP)
    else:
        chain += [backend.scale] if scale else []
        chain += [SOFTWARE_TONEMAP] if tonemap else []
    return [*chain, backend.format, *([backend.upload] if backend.upload else [])]
