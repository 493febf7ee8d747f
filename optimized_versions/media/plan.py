"""Planning a job: what to copy, what to encode where, and the ffmpeg argv. Pure functions.

One planner serves every backend: the backend's YAML supplies the pieces (device
set-up, hardware decoding, filters, encoder arguments), the planner puts them in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..catalog.backends import Backend
from ..catalog.device import CPU, Device
from ..catalog.profiles import Profile
from .audio import audio_filter
from .bitrate import rate_values, target_bit_rate
from .filters import SOFTWARE_TONEMAP, device_tonemaps, hw_decodable, video_chain
from .inputs import source_input
from .probe import AudioInfo, MediaInfo, SubtitleInfo, VideoInfo
from .tracks import Tracks, choose, map_args, output_args, pick_audio
from .tracks import input_args as sidecar_args
from .why import audio_copied, audio_reason, video_blockers, video_reason

__all__ = [
    "SOFTWARE_TONEMAP",
    "Plan",
    "PlanError",
    "Target",
    "build_argv",
    "make_plan",
    "source_input",
]

KEYFRAME_SECONDS = 5  # a key frame at least this often: seeking in the copy stays quick
# an image subtitle drawn over the picture; the picture goes on after the last subtitle
BURN_OVERLAY = "overlay=eof_action=pass:repeatlast=0"
MUXING_QUEUE = 2048  # packets buffered per stream while another starts late (Jellyfin's)


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
    deinterlace: str | None = None  # "tff"/"bff": deinterlaced on the rung that encodes
    field_rate: bool = False  # one frame per field (50i -> 50p)
    dovi: bool = False  # Dolby Vision profile 5: reshaped and tone-mapped by libplacebo
    bit_rate: int = 0  # what the encoder aims at (hardware) or caps at (CRF)
    gop: int = 250  # frames between key frames at most
    title: str | None = None  # the container's title (the item's name)
    audio_filter: str | None = None  # the downmix chain, when surround becomes stereo
    tracks: Tracks = field(default_factory=Tracks)  # every audio and subtitle track's fate
    why: tuple[str, ...] = ()  # per stream: copied or encoded, and the reasons (media.why)
    # the rate-control value a quality search chose (media/target.py): the encoder's
    # target args with it; None: the profile's quality (CRF) or bit rate
    quality: float | None = None

    def describe(self) -> str:
        if self.copy_video:
            video = "copy"
        else:
            extra = ", tone-mapped" if self.tonemap else ""
            extra += f", deinterlaced ({self.deinterlace})" if self.deinterlace else ""
            video = f"{self.encoder} {self.width}x{self.height} ({self.decoder} decode{extra})"
        if self.tracks.burn is not None:
            video += f", subtitle {self.tracks.burn.index} burned in"
        audio = "none" if self.audio is None else ("copy" if self.copy_audio else "aac")
        more = len(self.tracks.audio) - 1
        audio += f" (+{more} more)" if more > 0 else ""
        return f"video {video}, audio {audio}, {len(self.tracks.subtitles)} subtitle tracks"


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


def _box(video: VideoInfo, max_width: int, max_height: int) -> tuple[int, int]:
    """The output size: the profile's box turned to the picture's orientation (a portrait
    phone video keeps its 1080 columns), taken on the displayed (rotated) size."""
    shown_w, shown_h = video.display_size
    if (shown_h > shown_w) != (max_height > max_width):
        max_width, max_height = max_height, max_width
    return fit_within(shown_w, shown_h, max_width, max_height)


def _clean_title(title: str | None) -> str | None:
    text = "".join(c for c in (title or "") if c.isprintable()).strip()
    return text[:256] or None


def make_plan(
    profile: Profile,
    media: MediaInfo,
    target: Target,
    audio_index: int | None = None,
    *,
    title: str | None = None,
    downmix: str = "default",
    subtitle_index: int | None = None,
    external: tuple[SubtitleInfo, ...] = (),
) -> Plan:
    if media.video is None:
        raise PlanError("the source has no video stream")
    video = media.video
    if video.width <= 0 or video.height <= 0:
        raise PlanError("the source's video stream has no frame size")
    spec = profile.video
    width, height = _box(video, spec.max_width, spec.max_height)
    bit_rate = _video_bit_rate(media)
    tracks = choose(profile, media, audio_index, subtitle_index, downmix=downmix, external=external)
    blocked = video_blockers(video, profile, (width, height), bit_rate, tracks.burn is not None)
    copy_video = not blocked
    audio = pick_audio(media, audio_index)
    copy_audio = audio_copied(audio, profile)
    backend = target.backend
    if not copy_video and spec.codec not in backend.encoders:
        raise PlanError(f"backend {backend.name} has no {spec.codec} encoder")
    dovi = video.dovi_only and not copy_video
    tonemap = (video.hdr or dovi) and not copy_video
    deinterlace = video.field_order if video.interlaced and not copy_video else None
    decode = backend.decode
    hw_decode = (
        not copy_video
        and target.hw_decode
        and tracks.burn is None  # the overlay is drawn on the CPU
        and decode is not None
        and video.codec in decode.codecs
        and hw_decodable(video)
        and (deinterlace is None or decode.deinterlace is not None)
        and (not tonemap or device_tonemaps(decode, target.device, video))
    )
    field_rate = (
        deinterlace is not None and spec.deinterlace == "field" and (video.frame_rate or 0) <= 30
    )
    fps = float(video.frame_rate or 0) * (2 if field_rate else 1)
    mix = (
        None
        if audio is None or copy_audio
        else audio_filter(audio.channels, audio.layout, profile.audio.channels, downmix)
    )
    encoder = "copy" if copy_video else backend.encoders[spec.codec].codec
    decoder = "none" if copy_video else (backend.name if hw_decode else "software")
    return Plan(
        video_index=video.index,
        audio=audio,
        copy_video=copy_video,
        copy_audio=copy_audio,
        width=width,
        height=height,
        scale=(width, height) != video.display_size,
        tonemap=tonemap,
        hw_decode=hw_decode,
        codec=video.codec if copy_video else spec.codec,
        backend="copy" if copy_video else backend.name,
        encoder=encoder,
        decoder=decoder,
        deinterlace=deinterlace,
        field_rate=field_rate,
        dovi=dovi,
        bit_rate=target_bit_rate(spec.max_bitrate, bit_rate, video.codec, spec.codec),
        gop=math.ceil(KEYFRAME_SECONDS * fps) if fps > 0 else 250,
        title=_clean_title(title),
        audio_filter=mix,
        tracks=tracks,
        why=(
            video_reason(video, profile, blocked, (width, height), encoder, decoder, tonemap),
            audio_reason(audio, profile, downmix if mix else None),
        ),
    )


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
    argv += [*input_args, *sidecar_args(plan.tracks)]
    argv += ["-map", "[video]" if plan.tracks.burn else f"0:{plan.video_index}"]
    argv += map_args(plan.tracks)
    # the container's own tags go (encoder, comments); chapters and the streams' language
    # and title tags stay, and the title is the item's name
    argv += ["-map_metadata:g", "-1", "-map_chapters", "0", "-dn"]
    argv += ["-metadata", f"title={plan.title}"] if plan.title else []
    argv += _video_args(plan, target, values)
    argv += output_args(plan.tracks, profile)
    argv += [*profile.extra_args, "-max_muxing_queue_size", str(MUXING_QUEUE)]
    argv += ["-movflags", "+faststart", "-f", "mp4", "-y", output]
    return argv


def _values(plan: Plan, profile: Profile, target: Target) -> dict[str, object]:
    spec, backend = profile.video, target.backend
    encoder = backend.encoders.get(spec.codec)
    return {
        "width": plan.width,
        "height": plan.height,
        "pix_fmt": encoder.pix_fmt if encoder else "yuv420p",
        "preset": backend.preset(spec.preset),
        "quality": spec.quality if plan.quality is None else f"{plan.quality:g}",
        **rate_values(plan.bit_rate or spec.max_bitrate),
        "gop": plan.gop,
        "deint_mode": 1 if plan.field_rate else 0,  # bwdif/yadif: send_field or send_frame
        "deint_rate": "field" if plan.field_rate else "frame",  # deinterlace_vaapi
        "parity": {"tff": 0, "bff": 1}.get(plan.deinterlace or "", -1),
        "index": target.device.index,
        "render_node": target.device.render_node or "",
    }


def _video_args(plan: Plan, target: Target, values: dict[str, object]) -> list[str]:
    if plan.copy_video:
        return ["-c:v", "copy", *(["-tag:v", "hvc1"] if plan.codec == "hevc" else [])]
    backend = target.backend
    encoder = backend.encoders[plan.codec]
    aim = encoder.target if plan.quality is not None else None
    rate = (aim or encoder).args_for(target.device.traits)
    filters = video_chain(
        backend,
        hw_decode=plan.hw_decode,
        deinterlace=plan.deinterlace is not None,
        scale=plan.scale,
        tonemap=plan.tonemap,
        dovi=plan.dovi,
    )
    chain = ",".join(f.format_map(values) for f in filters)
    if plan.tracks.burn is not None:  # the subtitle drawn on the source picture, then the chain
        overlay = f"[0:{plan.video_index}][0:{plan.tracks.burn.index}]{BURN_OVERLAY}"
        graph = ["-filter_complex", f"{overlay}{',' + chain if chain else ''}[video]"]
    else:
        graph = ["-vf", chain]
    # a tone-mapped picture is BT.709: say so, or players guess from the size
    tags = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
    return [
        *graph,
        "-c:v", encoder.codec,
        *(arg.format_map(values) for arg in rate),
        *(tags if plan.tonemap else []),
        "-force_key_frames:0", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
        # each frame at its own time: MP4 would default to a constant rate (duplicates and
        # drops), and the encoder's default 1/fps clock cannot hold a 60p stretch of a VFR
        # phone video or a field-rate deinterlace; the filter graph's clock can
        "-fps_mode:v", "vfr", "-enc_time_base:v", "filter",
    ]  # fmt: skip
