"""Issue 12's cases as argv data, per backend, with the filter chain written out so that a
reader can hold it against Jellyfin's EncodingHelper (docs/backends.md has the table).

Jellyfin's chains for the same cases, for comparison (its defaults: yadif, single rate):
  NVENC, NVDEC:   yadif_cuda=0:-1:0,scale_cuda=format=yuv420p
                  scale_cuda=w=1920:h=1080,tonemap_cuda=format=yuv420p:p=bt709:t=bt709:...
  QSV (VA decode): deinterlace_vaapi=rate=frame,scale_vaapi=...:extra_hw_frames=24,
                  hwmap=derive_device=qsv,format=qsv
                  scale_vaapi=w=1920:h=1080:extra_hw_frames=24,tonemap_vaapi=format=nv12:
                  p=bt709:t=bt709:m=bt709:extra_hw_frames=32,hwmap=derive_device=qsv,format=qsv
  software:       yadif=0:-1:0,scale=...,format=yuv420p (tonemapx after the scale)
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.device import CPU, Device, Vendor
from optimized_versions.catalog.profiles import Profile, load_profiles
from optimized_versions.media.bitrate import INT_MAX, rate_values
from optimized_versions.media.filters import DOVI_TONEMAP, SOFTWARE_TONEMAP
from optimized_versions.media.plan import Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import AudioInfo, MediaInfo, VideoInfo

BACKENDS, PROFILES = load_backends(), load_profiles()
NVIDIA = Device(id="nvidia:1", vendor=Vendor.NVIDIA, name="RTX", index=1)
IHD = Device(id="dri:renderD128", vendor=Vendor.INTEL, name="Intel",
             render_node="/dev/dri/renderD128", va_driver="iHD")  # fmt: skip
I965 = replace(IHD, va_driver="i965")
AMD = Device(id="dri:renderD129", vendor=Vendor.AMD, name="AMD",
             render_node="/dev/dri/renderD129", va_driver="radeonsi")  # fmt: skip
DEVICE = {"software": CPU, "nvenc": NVIDIA, "qsv": IHD, "vaapi": IHD}

TV_1080I = VideoInfo(0, "h264", 1920, 1080, "yuv420p", 8, 15_000_000, field_order="tff",
                     frame_rate=Fraction(25))  # fmt: skip
DVD = VideoInfo(0, "mpeg2video", 720, 480, "yuv420p", 8, 5_000_000, field_order="bff",
                frame_rate=Fraction(30000, 1001))  # fmt: skip
HDR10 = VideoInfo(0, "hevc", 3840, 2160, "yuv420p10le", 10, 40_000_000, transfer=16,
                  mastering=True, frame_rate=Fraction(24))  # fmt: skip
HLG = replace(HDR10, transfer=18, mastering=False)
DV5 = replace(HDR10, transfer=2, mastering=False, dolby_vision=True)
HI10P = replace(HDR10, codec="h264", transfer=2, mastering=False, width=1920, height=1080)
HEVC_422 = replace(HI10P, codec="hevc", pix_fmt="yuv422p10le", bit_rate=30_000_000)
PHONE = VideoInfo(0, "hevc", 1920, 1080, "yuv420p", 8, 12_000_000, rotation=90,
                  frame_rate=Fraction(30))  # fmt: skip
BASE = PROFILES["h264-1080p"]
SPORT = replace(BASE, video=replace(BASE.video, deinterlace="field"))
SURROUND = AudioInfo(1, "eac3", 6, 640_000, "eng", layout="5.1(side)")


def argv_for(
    backend: str,
    video: VideoInfo,
    hw_decode: bool = True,
    profile: str | Profile = "h264-1080p",
    device: Device | None = None,
) -> list[str]:
    target = Target(BACKENDS[backend], device or DEVICE[backend], hw_decode)
    media = MediaInfo("matroska", 60, None, video, (SURROUND,))
    chosen = PROFILES[profile] if isinstance(profile, str) else profile
    plan = make_plan(chosen, media, target, title="A Film", downmix="nightmode")
    return build_argv("ffmpeg", plan, chosen, target, source_input("in"), "o.mp4")


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


LIBPLACEBO = DOVI_TONEMAP.format(width=1920, height=1080, pix_fmt="yuv420p")
CASES = [  # backend, source, hardware decode asked, the chain written out
    ("nvenc", TV_1080I, True, "bwdif_cuda=mode=0:parity=0:deint=all,scale_cuda=format=yuv420p"),
    ("nvenc", TV_1080I, False, "bwdif=mode=0:parity=0:deint=all,format=yuv420p"),
    ("nvenc", HDR10, True, "scale_cuda=w=1920:h=1080,tonemap_cuda=format=yuv420p:p=bt709:"
     "t=bt709:m=bt709:tonemap=bt2390"),
    ("nvenc", HLG, True, "scale_cuda=w=1920:h=1080,tonemap_cuda=format=yuv420p:p=bt709:"
     "t=bt709:m=bt709:tonemap=bt2390"),
    ("nvenc", HI10P, True, "format=yuv420p"),  # no NVDEC for Hi10P: software decode
    ("nvenc", HEVC_422, True, "format=yuv420p"),  # 4:2:2: software decode
    ("nvenc", PHONE, True, "format=yuv420p"),  # autorotate on the CPU, 1080x1920 kept
    ("nvenc", DV5, True, f"{LIBPLACEBO},format=yuv420p"),
    ("qsv", TV_1080I, True, "deinterlace_vaapi=rate=frame,scale_vaapi=format=nv12:"
     "extra_hw_frames=24,hwmap=derive_device=qsv,format=qsv"),
    ("qsv", TV_1080I, False, "bwdif=mode=0:parity=0:deint=all,format=nv12"),
    ("qsv", HDR10, True, "scale_vaapi=w=1920:h=1080:extra_hw_frames=24,tonemap_vaapi="
     "format=nv12:p=bt709:t=bt709:m=bt709:extra_hw_frames=32,hwmap=derive_device=qsv,"
     "format=qsv"),
    ("qsv", HLG, True, f"scale=w=1920:h=1080:flags=lanczos,{SOFTWARE_TONEMAP},format=nv12"),
    ("vaapi", DVD, True, "deinterlace_vaapi=rate=frame,scale_vaapi=format=nv12"),
    ("vaapi", HDR10, True, "scale_vaapi=w=1920:h=1080:extra_hw_frames=24,tonemap_vaapi="
     "format=nv12:p=bt709:t=bt709:m=bt709:extra_hw_frames=32"),
    ("vaapi", HDR10, False, f"scale=w=1920:h=1080:flags=lanczos,{SOFTWARE_TONEMAP},"
     "format=nv12,hwupload"),
    ("software", DVD, False, "bwdif=mode=0:parity=1:deint=all,format=yuv420p"),
    ("software", HDR10, False, f"scale=w=1920:h=1080:flags=lanczos,{SOFTWARE_TONEMAP},"
     "format=yuv420p"),
    ("software", DV5, False, f"{LIBPLACEBO},format=yuv420p"),
]  # fmt: skip


@pytest.mark.parametrize(("backend", "video", "hw_decode", "expected"), CASES)
def test_filter_chain(backend: str, video: VideoInfo, hw_decode: bool, expected: str) -> None:
    argv = argv_for(backend, video, hw_decode)
    assert value(argv, "-vf") == expected
    on_device = expected.split("=", 1)[0].endswith(("_cuda", "_vaapi"))
    assert ("-hwaccel" in argv) == on_device


def test_amd_has_no_vaapi_tone_mapper_and_intel_needs_hdr10() -> None:
    amd = argv_for("vaapi", HDR10, device=AMD)
    assert "-hwaccel" not in amd and SOFTWARE_TONEMAP in value(amd, "-vf")
    no_mastering = argv_for("vaapi", replace(HDR10, mastering=False))
    assert "-hwaccel" not in no_mastering, "tonemap_vaapi needs HDR10 mastering data"


def test_field_rate_per_backend() -> None:
    nvenc = argv_for("nvenc", TV_1080I, profile=SPORT)
    assert value(nvenc, "-vf").startswith("bwdif_cuda=mode=1:parity=0:deint=all,")
    assert value(nvenc, "-g") == "250"  # 5 s at 50p
    vaapi = value(argv_for("vaapi", DVD, profile=SPORT), "-vf")
    assert vaapi.startswith("deinterlace_vaapi=rate=field,")
    software = value(argv_for("software", DVD, False, SPORT), "-vf")
    assert software.startswith("bwdif=mode=1:parity=1:deint=all,")
    fast = replace(TV_1080I, frame_rate=Fraction(50))  # already 50 frames a second
    assert value(argv_for("nvenc", fast, profile=SPORT), "-vf").startswith("bwdif_cuda=mode=0")


def test_interlaced_422_and_dv5_are_never_copied() -> None:
    for video in (replace(TV_1080I, bit_rate=5_000_000), HEVC_422, DV5):
        assert value(argv_for("software", video, False, "copy"), "-c:v") == "libx264"

    def small(video: VideoInfo) -> VideoInfo:  # fits hevc-1080p's size and rate
        return replace(video, width=1920, height=1080, bit_rate=4_000_000)

    for video in (small(HEVC_422), small(DV5)):
        assert value(argv_for("software", video, False, "hevc-1080p"), "-c:v") == "libx265"
    assert value(argv_for("software", small(HDR10), False, "hevc-1080p"), "-c:v") == "copy"


@pytest.mark.parametrize(
    ("video", "profile", "expected"),
    [
        (DVD, "h264-1080p", 5_000_000),  # a 5 Mb/s DVD stays at 5, not the profile's 8
        (replace(HDR10, bit_rate=3_000_000), "h264-1080p", 8_000_000),  # HEVC->H.264, capped
        (replace(TV_1080I, bit_rate=1_000_000), "h264-1080p", 5_000_000),  # low: headroom
        (replace(DVD, codec="vc1", bit_rate=20_000_000), "copy", 20_000_000),
        (replace(DVD, codec="vc1", bit_rate=None), "copy", 400_000_000),  # unknown: the cap
    ],
)
def test_bit_rate_follows_the_source(video: VideoInfo, profile: str, expected: int) -> None:
    nvenc = argv_for("nvenc", video, profile=profile)
    assert (value(nvenc, "-b:v"), value(nvenc, "-maxrate")) == (str(expected), str(expected))
    assert value(nvenc, "-bufsize") == str(2 * expected)
    qsv = argv_for("qsv", video, profile=profile)
    assert value(qsv, "-maxrate") == str(expected + 1)
    assert value(qsv, "-rc_init_occupancy") == str(2 * expected)
    assert value(qsv, "-bufsize") == str(4 * expected) and 4 * expected <= INT_MAX
    assert value(argv_for("software", video, False, profile), "-maxrate") == str(expected)


def test_qsv_values_stay_within_a_c_int() -> None:
    """The old copy profile asked QSV for -bufsize 4000000000: past INT_MAX, QSV failed."""
    assert rate_values(1_000_000_000)["bufsize_qsv"] == INT_MAX
    assert set(rate_values(3_000_000_000).values()) == {INT_MAX}


def test_vaapi_device_quirks() -> None:
    amd = argv_for("vaapi", HEVC_422, profile="hevc-1080p", device=AMD)
    assert value(amd, "-flags:v") == "-global_header"
    assert value(amd, "-bsf:v") == "extract_extradata=remove=0"
    assert value(amd, "-tag:v") == "hvc1" and value(amd, "-rc_mode") == "VBR"
    intel = argv_for("vaapi", HEVC_422, profile="hevc-1080p", device=IHD)
    assert "-bsf:v" not in intel and value(intel, "-sei") == "-a53_cc"
    i965 = argv_for("vaapi", TV_1080I, device=I965)
    assert value(i965, "-rc_mode") == "CBR" and i965.count("-rc_mode") == 1


def test_key_frames_sync_muxing_and_environment() -> None:
    for backend, gop in (("nvenc", "125"), ("qsv", "125"), ("vaapi", None), ("software", None)):
        argv = argv_for(backend, TV_1080I)
        assert (value(argv, "-g") if "-g" in argv else None) == gop
        assert value(argv, "-force_key_frames:0") == "expr:gte(t,n_forced*5)"
        assert (value(argv, "-fps_mode:v"), value(argv, "-enc_time_base:v")) == ("vfr", "filter")
        assert value(argv, "-max_muxing_queue_size") == "2048"
    assert BACKENDS["nvenc"].env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert value(argv_for("nvenc", TV_1080I), "-init_hw_device") == "cuda=cu:1"


def test_tags_chapters_title_and_downmix() -> None:
    argv = argv_for("software", DVD, False)
    assert (value(argv, "-map_metadata:g"), value(argv, "-map_chapters")) == ("-1", "0")
    assert value(argv, "-metadata") == "title=A Film"
    assert value(argv, "-af") == (
        "aformat=sample_fmts=fltp,pan=stereo|c0=c2+0.30*c0+0.30*c4|c1=c2+0.30*c1+0.30*c5,"
        "alimiter=limit=0.891:level=0:latency=1"
    )
