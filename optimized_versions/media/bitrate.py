"""The video bit rate an encode aims at: the profile's cap, lowered to what the source has.

Jellyfin's rule (``GetVideoBitrateParamValue``): a copy never gets more bits than its
source (a 5 Mb/s DVD stays near 5 Mb/s, not the profile's 8), low-rate sources get some
headroom, a codec change is paid for (HEVC to H.264 needs more bits), and nothing asks
an encoder for more than 400 Mb/s. Encoder options that are C ``int`` (QSV's
``-bufsize``) are clamped so that a large cap can never overflow them.
"""

from __future__ import annotations

MAX_SANE = 400_000_000  # no consumer or professional hardware target exceeds it
INT_MAX = 2**31 - 1  # AVCodecContext's rc_buffer_size and friends are ints
# bits an H.264 stream needs for the quality another codec gets from one bit
_EFFICIENCY = {"hevc": 0.6, "h265": 0.6, "vp9": 0.6, "av1": 0.5}


def _headroom(source: int) -> int:
    """Low-rate sources are given more bits: re-encoding costs quality."""
    if source <= 2_000_000:
        return int(source * 2.5)
    if source <= 3_000_000:
        return source * 2
    return source


def _codec_factor(bit_rate: int, source_codec: str, output_codec: str) -> float:
    factor = max(_EFFICIENCY.get(output_codec, 1.0) / _EFFICIENCY.get(source_codec, 1.0), 1.0)
    for ceiling, least in ((500_000, 4.0), (1_000_000, 3.0), (2_000_000, 2.5), (3_000_000, 2.0)):
        if bit_rate <= ceiling:
            return max(factor, least)
    return 1.0 if bit_rate >= 30_000_000 else factor


def target_bit_rate(cap: int, source: int | None, source_codec: str, output_codec: str) -> int:
    """What the encoder aims at: ``cap`` (the profile's maximum) lowered to the source's
    rate scaled by codec; ``cap`` itself when the source's rate is unknown; never above
    ``MAX_SANE``."""
    bit_rate = cap
    if source:
        bit_rate = min(_headroom(source), cap)
        scaled = int(bit_rate * _codec_factor(bit_rate, source_codec, output_codec))
        bit_rate = min(scaled, cap)
    return max(1, min(bit_rate, MAX_SANE))


def rate_values(bit_rate: int) -> dict[str, int]:
    """The template values backends use, each within a C int."""
    return {
        "bitrate": min(bit_rate, INT_MAX),
        "bitrate_vbr": min(bit_rate + 1, INT_MAX),  # QSV: maxrate above bitrate means VBR
        "bufsize": min(2 * bit_rate, INT_MAX),
        "bufsize_qsv": min(4 * bit_rate, INT_MAX),
    }
