"""Planning a job: what to copy, what to encode where, and the ffmpeg argv. Pure functions.

One planner serves every backend: the backend's YAML supplies the pieces (device
set-up, hardware decoding, filters, encoder arguments), the planner puts them in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog.backends import Backend
from ..catalog.device import CPU, Device
from ..catalog.profiles import Profile
from .probe import AudioInfo, MediaInfo

# Pixel formats that H.264 players accept everywhere when a stream is copied as is.
_PLAYABLE_H264 = frozenset({"yuv420p", "yuvj420p"})
# HDR (PQ or HLG) to SDR BT.709 on the CPU, for backends without a tone-map filter of their own.
SOFTWARE_TONEMAP = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"
)


class PlanError(Exception):
    """The source cannot become the profile's output (no video stream, for example)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the video is encoded: a backend on a device, decoding there or on the CPU."""

    backend: Backend
    device: Device = CPU
    hw_decode: bool = False

    def describe(self) -> str:
        decode = "hardware" if self.hw_decode else "software"
        return f"{self.backend.name} on {self.device.id} ({decode} decode)"


@dataclass(frozen=True, slots=True)
class Plan:
    video_index: int
    audio: AudioInfo | None
    copy_video: bool
    copy_audio: bool
    width: int
    height: int
    scale: bool
    tonemap: bool  # HDR source to SDR output
    hw_decode: bool
    codec: str  # the output's video codec
    backend: str  # the encoder backend, or "copy" when the video is not encoded
    encoder: str  # the ffmpeg encoder, or "copy"
    decoder: str  # "software", the backend's hardware decoder, or "none" when copied

    def describe(self) -> str:
        if self.copy_video:
            video = "copy"
        else:
            extra = ", tone-mapped" if self.tonemap else ""
            video = f"{self.encoder} {self.width}x{self.height} ({self.decoder} decode{extra})"
        audio = "none" if self.audio is None else ("copy" if self.copy_audio else "aac")
        return f"video {video}, audio {audio}"


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Largest even size within the box that keeps the aspect ratio; never upscales."""
    factor = min(1.0, max_width / width, max_height / height)
    return max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2)


def _video_bit_rate(media: MediaInfo) -> int | None:
    assert media.video is not None
    if media.video.bit_rate:
        return media.video.bit_rate
    if media.bit_rate:
        return max(0, media.bit_rate - sum(a.bit_rate or 128_000 for a in media.audio))
    return None


def pick_audio(media: MediaInfo, requested: int | None) -> AudioInfo | None:
    """The client's AudioStreamIndex when it names an audio stream, else the first one."""
    if requested is not None and (chosen := media.audio_by_index(requested)) is not None:
        return chosen
    return media.audio[0] if media.audio else None


def make_plan(
    profile: Profile, media: MediaInfo, target: Target, audio_index: int | None = None
) -> Plan:
    if media.video is None:
        raise PlanError("the source has no video stream")
    video = media.video
    if video.width <= 0 or video.height <= 0:
        raise PlanError("the source's video stream has no frame size")
    spec = profile.video
    width, height = fit_within(video.width, video.height, spec.max_width, spec.max_height)
    bit_rate = _video_bit_rate(media)
    copy_video = (
        video.codec in spec.copy_codecs
        and (video.codec != "h264" or (video.bit_depth == 8 and video.pix_fmt in _PLAYABLE_H264))
        and (width, height) == (video.width, video.height)
        and bit_rate is not None
        and bit_rate <= spec.max_bitrate
    )
    audio = pick_audio(media, audio_index)
    copy_audio = (
        audio is not None
        and audio.codec == profile.audio.codec
        and audio.channels <= profile.audio.channels
    )
    backend = target.backend
    if not copy_video and spec.codec not in backend.encoders:
        raise PlanError(f"backend {backend.name} has no {spec.codec} encoder")
    tonemap = video.hdr and not copy_video
    decode = backend.decode
    hw_decode = (
        not copy_video
        and target.hw_decode
        and decode is not None
        and video.codec in decode.codecs
        and (not tonemap or decode.tonemap is not None)
    )
    return Plan(
        video_index=video.index,
        audio=audio,
        copy_video=copy_video,
        copy_audio=copy_audio,
        width=width,
        height=height,
        scale=(width, height) != (video.width, video.height),
        tonemap=tonemap,
        hw_decode=hw_decode,
        codec=video.codec if copy_video else spec.codec,
        backend="copy" if copy_video else backend.name,
        encoder="copy" if copy_video else backend.encoders[spec.codec].codec,
        decoder="none" if copy_video else (backend.name if hw_decode else "software"),
    )


# An HTTP source that drops is asked again from where it stopped (Range), a few times.
_RECONNECT = ["-reconnect", "1", "-reconnect_on_network_error", "1",
              "-reconnect_delay_max", "4", "-reconnect_max_retries", "5"]  # fmt: skip


def source_input(source: str) -> list[str]:
    """Input arguments for a job's source: an http URL (the relay) or a file path, and
    no other protocol (no redirects to file:, no concat or subfile tricks)."""
    network = source.startswith(("http://", "https://"))
    protocols = ["-protocol_whitelist", "http,tcp" if network else "file"]
    return [*protocols, *(_RECONNECT if network else []),
            "-analyzeduration", "200M", "-probesize", "1G", "-i", source]  # fmt: skip


def build_argv(
    ffmpeg: str,
    plan: Plan,
    profile: Profile,
    target: Target,
    input_args: list[str],
    output: str,
) -> list[str]:
    """The whole ffmpeg command line for one job; ``-progress pipe:1`` reports on stdout."""
    argv = [ffmpeg, "-hide_banner", "-v", "error", "-nostats",
            "-progress", "pipe:1", "-stats_period", "1"]  # fmt: skip
    values = _values(plan, profile, target)
    if not plan.copy_video:
        argv += [arg.format_map(values) for arg in target.backend.init]
    if plan.hw_decode:
        assert target.backend.decode is not None
        argv += target.backend.decode.args
    argv += [*input_args, "-map", f"0:{plan.video_index}"]
    if plan.audio is not None:
        argv += ["-map", f"0:{plan.audio.index}"]
    argv += ["-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn"]
    argv += _video_args(plan, target, values)
    if plan.audio is not None:
        if plan.copy_audio:
            argv += ["-c:a", "copy"]
        else:
            audio = profile.audio
            argv += ["-c:a", audio.codec, "-ac", str(audio.channels), "-b:a", str(audio.bitrate)]
    argv += [*profile.extra_args, "-movflags", "+faststart", "-f", "mp4", "-y", output]
    return argv


def _values(plan: Plan, profile: Profile, target: Target) -> dict[str, object]:
    spec, backend = profile.video, target.backend
    encoder = backend.encoders.get(spec.codec)
    return {
        "width": plan.width,
        "height": plan.height,
        "pix_fmt": encoder.pix_fmt if encoder else "yuv420p",
        "preset": backend.preset(spec.preset),
        "quality": spec.quality,
        "bitrate": spec.max_bitrate,
        "bitrate_vbr": spec.max_bitrate + 1,
        "bufsize": 2 * spec.max_bitrate,
        "bufsize_qsv": 4 * spec.max_bitrate,
        "index": target.device.index,
        "render_node": target.device.render_node or "",
    }


def _video_args(plan: Plan, target: Target, values: dict[str, object]) -> list[str]:
    if plan.copy_video:
        return ["-c:v", "copy", *(["-tag:v", "hvc1"] if plan.codec == "hevc" else [])]
    backend = target.backend
    encoder = backend.encoders[plan.codec]
    if plan.hw_decode:
        assert backend.decode is not None
        decode = backend.decode
        chosen = decode.tonemap if plan.tonemap else None
        filters = [chosen or (decode.scale if plan.scale else decode.format)]
    else:
        filters = [SOFTWARE_TONEMAP] if plan.tonemap else []
        filters += [backend.scale] if plan.scale else []
        filters += [backend.format] + ([backend.upload] if backend.upload else [])
    # a tone-mapped picture is BT.709: say so, or players guess from the size
    tags = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
    return [
        "-vf", ",".join(f.format_map(values) for f in filters),
        "-c:v", encoder.codec,
        *(arg.format_map(values) for arg in encoder.args),
        *(tags if plan.tonemap else []),
        "-force_key_frames:0", "expr:gte(t,n_forced*5)",
    ]  # fmt: skip
