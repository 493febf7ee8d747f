"""The planner and the argv it builds, checked as data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.media.plan import (
    PlanError,
    Target,
    build_argv,
    fit_within,
    make_plan,
    source_input,
)
from optimized_versions.media.probe import AudioInfo, MediaInfo, VideoInfo

PROFILE = load_profiles()["h264-1080p"]
SOFTWARE = load_backends()["software"]
H264 = VideoInfo(
    index=0,
    codec="h264",
    width=1920,
    height=1080,
    pix_fmt="yuv420p",
    bit_depth=8,
    bit_rate=5_000_000,
)
STEREO = AudioInfo(index=1, codec="aac", channels=2, bit_rate=192_000, language="eng")
SURROUND = AudioInfo(index=2, codec="eac3", channels=6, bit_rate=640_000, language="fra")


def media(video: VideoInfo | None = H264, *audio: AudioInfo) -> MediaInfo:
    return MediaInfo(
        format="matroska", duration=60.0, bit_rate=6_000_000, video=video, audio=audio or (STEREO,)
    )


def argv_for(info: MediaInfo, audio_index: int | None = None) -> list[str]:
    target = Target(SOFTWARE)
    plan = make_plan(PROFILE, info, target, audio_index)
    return build_argv(
        "ffmpeg", plan, PROFILE, target, source_input("http://jf/src"), "/c/out.mp4.part"
    )


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_a_fitting_source_is_copied() -> None:
    argv = argv_for(media())
    assert value(argv, "-c:v") == "copy" and value(argv, "-c:a") == "copy"
    assert "-vf" not in argv and "-force_key_frames:0" not in argv
    assert argv[-6:] == ["-movflags", "+faststart", "-f", "mp4", "-y", "/c/out.mp4.part"]
    assert argv[argv.index("-i") + 1] == "http://jf/src"
    assert value(argv, "-progress") == "pipe:1"


@pytest.mark.parametrize(
    ("video", "maxrate"),
    [
        (replace(H264, codec="hevc"), 8_000_000),  # 5 Mb/s HEVC is worth 8.3 in H.264: capped
        (replace(H264, bit_depth=10, pix_fmt="yuv420p10le"), 5_000_000),
        (replace(H264, pix_fmt="yuv422p"), 5_000_000),
        (replace(H264, width=3840, height=2160), 5_000_000),
        (replace(H264, bit_rate=20_000_000), 8_000_000),
        (replace(H264, field_order="tff"), 5_000_000),
    ],
    ids=["hevc", "10-bit", "4:2:2", "4k", "bitrate", "interlaced"],
)
def test_what_does_not_fit_is_encoded_with_libx264(video: VideoInfo, maxrate: int) -> None:
    """CRF, with -maxrate at the source's rate (scaled by codec) or the profile's cap."""
    argv = argv_for(media(video))
    assert value(argv, "-c:v") == "libx264"
    assert value(argv, "-crf") == "23" and value(argv, "-preset") == "medium"
    assert value(argv, "-maxrate") == str(maxrate) and value(argv, "-bufsize") == str(2 * maxrate)
    assert value(argv, "-profile:v") == "high"
    assert value(argv, "-vf").endswith("format=yuv420p")
    assert value(argv, "-force_key_frames:0") == "expr:gte(t,n_forced*5)"


def test_4k_is_scaled_into_1080p() -> None:
    argv = argv_for(media(replace(H264, width=3840, height=2160)))
    assert value(argv, "-vf") == "scale=w=1920:h=1080:flags=lanczos,format=yuv420p"


def test_surround_is_encoded_to_aac_stereo_and_the_client_choice_wins() -> None:
    argv = argv_for(media(H264, STEREO, SURROUND), audio_index=2)
    assert argv.count("-map") == 2 and "0:2" in argv
    assert (value(argv, "-c:a"), value(argv, "-ac"), value(argv, "-b:a")) == ("aac", "2", "192000")
    default = argv_for(media(H264, STEREO, SURROUND), audio_index=7)  # no such stream: first one
    assert "0:1" in default and value(default, "-c:a") == "copy"


def test_no_audio_and_no_video() -> None:
    silent = MediaInfo(format="mp4", duration=1.0, bit_rate=None, video=H264, audio=())
    argv = argv_for(silent)
    assert "-c:a" not in argv and argv.count("-map") == 1
    with pytest.raises(PlanError, match="no video"):
        argv_for(media(None))


def test_unknown_bitrate_is_encoded_rather_than_guessed() -> None:
    unknown = MediaInfo(
        format="mpegts",
        duration=None,
        bit_rate=None,
        video=replace(H264, bit_rate=None),
        audio=(STEREO,),
    )
    assert value(argv_for(unknown), "-c:v") == "libx264"


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((3840, 2160), (1920, 1080), (1920, 1080)),
        ((1920, 800), (1280, 720), (1280, 534)),
        ((720, 576), (1920, 1080), (720, 576)),
        ((1080, 1920), (1920, 1080), (608, 1080)),
        ((853, 481), (1920, 1080), (852, 480)),
    ],
)
def test_fit_within_keeps_aspect_even_and_never_upscales(
    size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert fit_within(*size, *box) == expected


def why(info: MediaInfo, **changes: object) -> tuple[str, ...]:
    return make_plan(PROFILE, info, Target(SOFTWARE), **changes).why  # type: ignore[arg-type]


def test_why_names_a_copy_and_what_fits() -> None:
    assert why(media()) == (
        "video copied: H.264 1920x1080 8-bit fits h264-1080p",
        "audio copied: AAC stereo fits h264-1080p",
    )


def test_why_names_every_reason_a_video_is_encoded() -> None:
    uhd = replace(
        H264,
        codec="hevc",
        width=3840,
        height=2160,
        pix_fmt="yuv420p10le",
        bit_depth=10,
        bit_rate=40_000_000,
        transfer=16,
    )
    video, audio = why(media(uhd, SURROUND), downmix="nightmode")
    assert video == (
        "video encoded (libx264, software decode, tone-mapped to SDR): "
        "HEVC 3840x2160 10-bit HDR10 → H.264 1920x1080: h264-1080p keeps only H.264, "
        "larger than 1920x1080, 40.0 Mb/s is above 8.0 Mb/s"
    )
    assert audio == "audio encoded: E-AC3 5.1 → AAC stereo (downmix: nightmode)"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"field_order": "tff"}, "interlaced (phones show combing)"),
        ({"pix_fmt": "yuv420p10le", "bit_depth": 10}, "10-bit H.264 does not play on phones"),
        ({"pix_fmt": "yuv422p"}, "phones play 4:2:0 only"),
        ({"bit_rate": None}, "its bit rate is unknown"),
    ],
)
def test_why_a_fitting_h264_is_still_encoded(changes: dict[str, object], reason: str) -> None:
    info = replace(media(replace(H264, **changes)), bit_rate=None)  # type: ignore[arg-type]
    video, _ = why(info)
    assert video.startswith("video encoded (libx264, software decode): H.264 1920x1080")
    assert video.endswith(f": {reason}"), video


def test_why_without_audio() -> None:
    info = MediaInfo(format="mp4", duration=1.0, bit_rate=None, video=H264, audio=())
    assert why(info)[1] == "no audio track"
