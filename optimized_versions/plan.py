"""Planning a job: what to copy, what to encode, and the ffmpeg argv. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from .media import AudioInfo, MediaInfo
from .profiles import Backend, Profile

# Pixel formats that H.264 players accept everywhere when a stream is copied as is.
_PLAYABLE_PIX_FMTS = frozenset({"yuv420p", "yuvj420p"})


class PlanError(Exception):
    """The source cannot become the profile's output (no video stream, for example)."""


@dataclass(frozen=True, slots=True)
class Plan:
    video_index: int
    audio: AudioInfo | None
    copy_video: bool
    copy_audio: bool
    width: int
    height: int
    scale: bool
    backend: str  # the encoder backend, or "copy" when nothing is encoded

    def describe(self) -> str:
        video = "copy" if self.copy_video else f"{self.backend} {self.width}x{self.height}"
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
    profile: Profile, media: MediaInfo, backend: Backend, audio_index: int | None = None
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
        video.codec == spec.codec
        and video.bit_depth == 8
        and (video.pix_fmt in _PLAYABLE_PIX_FMTS)
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
    return Plan(
        video_index=video.index,
        audio=audio,
        copy_video=copy_video,
        copy_audio=copy_audio,
        width=width,
        height=height,
        scale=(width, height) != (video.width, video.height),
        backend="copy" if copy_video else backend.name,
    )


def build_argv(
    ffmpeg: str, plan: Plan, profile: Profile, backend: Backend, source: str, output: str
) -> list[str]:
    """The whole ffmpeg command line for one job; ``-progress pipe:1`` reports on stdout."""
    argv = [
        ffmpeg,
        "-hide_banner",
        "-v",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        "1",
        "-analyzeduration",
        "200M",
        "-probesize",
        "1G",
        "-i",
        source,
        "-map",
        f"0:{plan.video_index}",
    ]
    if plan.audio is not None:
        argv += ["-map", f"0:{plan.audio.index}"]
    argv += ["-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn"]
    argv += _video_args(plan, profile, backend)
    if plan.audio is not None:
        if plan.copy_audio:
            argv += ["-c:a", "copy"]
        else:
            audio = profile.audio
            argv += ["-c:a", audio.codec, "-ac", str(audio.channels), "-b:a", str(audio.bitrate)]
    argv += [*profile.extra_args, "-movflags", "+faststart", "-f", "mp4", "-y", output]
    return argv


def _video_args(plan: Plan, profile: Profile, backend: Backend) -> list[str]:
    spec = profile.video
    if plan.copy_video:
        return ["-c:v", "copy", *(["-tag:v", "hvc1"] if spec.codec == "hevc" else [])]
    encoder = backend.encoders.get(spec.codec)
    if encoder is None:
        raise PlanError(f"backend {backend.name} has no {spec.codec} encoder")
    values = {
        "width": plan.width,
        "height": plan.height,
        "pix_fmt": encoder.pix_fmt,
        "preset": spec.preset,
        "quality": spec.quality,
        "bitrate": spec.max_bitrate,
        "bufsize": 2 * spec.max_bitrate,
    }
    filters = ([backend.scale] if plan.scale else []) + [backend.format]
    return [
        "-vf",
        ",".join(f.format_map(values) for f in filters),
        "-c:v",
        encoder.codec,
        *(arg.format_map(values) for arg in encoder.args),
        "-force_key_frames:0",
        "expr:gte(t,n_forced*5)",
    ]
