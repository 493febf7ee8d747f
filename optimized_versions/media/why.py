"""Why each stream is copied or encoded, in words. Pure functions.

The copy decisions are made here: a stream is copied when nothing blocks it, so the reasons
the pages show ("video encoded: HEVC 3840x2160 10-bit HDR10 → H.264 1920x1080: larger
than 1920x1080 ...") are the very reasons the planner acted on.
"""

from __future__ import annotations

from ..catalog.profiles import Profile
from .probe import AudioInfo, VideoInfo

# Pixel formats that players accept everywhere when a stream is copied as is.
PLAYABLE = {
    "h264": frozenset({"yuv420p", "yuvj420p"}),
    "hevc": frozenset({"yuv420p", "yuv420p10le"}),
}
_CODECS = {
    "h264": "H.264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9", "vp8": "VP8",
    "mpeg2video": "MPEG-2", "mpeg4": "MPEG-4", "vc1": "VC-1", "aac": "AAC", "ac3": "AC3",
    "eac3": "E-AC3", "dts": "DTS", "truehd": "TrueHD", "mp3": "MP3", "flac": "FLAC",
    "opus": "Opus", "vorbis": "Vorbis",
}  # fmt: skip
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 7: "6.1", 8: "7.1"}
_TRANSFERS = {16: "HDR10", 18: "HLG"}


def codec_name(codec: str) -> str:
    return _CODECS.get(codec, codec)


def channels_name(channels: int) -> str:
    return _LAYOUTS.get(channels, f"{channels} channels")


def _mbps(bits: int) -> str:
    return f"{bits / 1e6:.1f} Mb/s"


def video_label(video: VideoInfo) -> str:
    """ "HEVC 3840x2160 10-bit HDR10": the source as a person would name it."""
    width, height = video.display_size
    label = f"{codec_name(video.codec)} {width}x{height} {video.bit_depth}-bit"
    if video.dolby_vision:
        label += " Dolby Vision"
    elif video.transfer in _TRANSFERS:
        label += f" {_TRANSFERS[video.transfer]}"
    if video.chroma != "420":
        label += f" 4:{video.chroma[1]}:{video.chroma[2]}"
    return label + (" interlaced" if video.interlaced else "")


def video_blockers(
    video: VideoInfo,
    profile: Profile,
    size: tuple[int, int],
    bit_rate: int | None,
    burn: bool,
) -> list[str]:
    """Everything that stops the video being copied as it is; [] means copy it."""
    spec = profile.video
    blocked = []
    if burn:
        blocked.append("a subtitle is burned into the picture")
    if video.codec not in spec.copy_codecs:
        blocked.append(f"{profile.name} keeps only {', '.join(map(codec_name, spec.copy_codecs))}")
    if video.interlaced:
        blocked.append("interlaced (phones show combing)")
    if video.dovi_only:
        blocked.append("Dolby Vision without a base layer phones can show")
    if video.chroma != "420":
        blocked.append("phones play 4:2:0 only")
    elif video.codec in PLAYABLE and video.pix_fmt not in PLAYABLE[video.codec]:
        blocked.append(f"{video.bit_depth}-bit {codec_name(video.codec)} does not play on phones")
    if size != video.display_size:
        blocked.append(f"larger than {profile.video.max_width}x{profile.video.max_height}")
    if bit_rate is None:
        blocked.append("its bit rate is unknown")
    elif bit_rate > spec.max_bitrate:
        blocked.append(f"{_mbps(bit_rate)} is above {_mbps(spec.max_bitrate)}")
    return blocked


def video_reason(
    video: VideoInfo,
    profile: Profile,
    blocked: list[str],
    size: tuple[int, int],
    encoder: str,
    decoder: str,
    tonemap: bool,
) -> str:
    label = video_label(video)
    if not blocked:
        return f"video copied: {label} fits {profile.name}"
    output = f"{codec_name(profile.video.codec)} {size[0]}x{size[1]}"
    how = f"{encoder}, {decoder} decode" + (", tone-mapped to SDR" if tonemap else "")
    return f"video encoded ({how}): {label} → {output}: {', '.join(blocked)}"


def audio_copied(audio: AudioInfo | None, profile: Profile) -> bool:
    return (
        audio is not None
        and audio.codec == profile.audio.codec
        and audio.channels <= profile.audio.channels
    )


def audio_reason(audio: AudioInfo | None, profile: Profile, downmix: str | None) -> str:
    if audio is None:
        return "no audio track"
    label = f"{codec_name(audio.codec)} {channels_name(audio.channels)}"
    if audio_copied(audio, profile):
        return f"audio copied: {label} fits {profile.name}"
    output = f"{codec_name(profile.audio.codec)} {channels_name(profile.audio.channels)}"
    return f"audio encoded: {label} → {output}" + (f" (downmix: {downmix})" if downmix else "")
