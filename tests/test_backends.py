"""Every backend's argv, built from its YAML, checked as data against hardware.md."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.device import CPU, Device, Vendor
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.media.plan import (
    SOFTWARE_TONEMAP,
    Target,
    build_argv,
    make_plan,
    source_input,
)
from optimized_versions.media.probe import AudioInfo, MediaInfo, VideoInfo

BACKENDS = load_backends()
PROFILES = load_profiles()
DEVICES = {
    "software": CPU,
    "nvenc": Device(id="nvidia:1", vendor=Vendor.NVIDIA, name="RTX", index=1, driver="550.54"),
    "qsv": Device(
        id="dri:renderD129", vendor=Vendor.INTEL, name="Intel", render_node="/dev/dri/renderD129"
    ),
    "vaapi": Device(
        id="dri:renderD128", vendor=Vendor.AMD, name="AMD", render_node="/dev/dri/renderD128"
    ),
}
HEVC_4K = VideoInfo(
    index=0,
    codec="hevc",
    width=3840,
    height=2160,
    pix_fmt="yuv420p10le",
    bit_depth=10,
    bit_rate=40_000_000,
)
SDR_1080 = VideoInfo(
    index=0,
    codec="h264",
    width=1920,
    height=1080,
    pix_fmt="yuv420p",
    bit_depth=8,
    bit_rate=30_000_000,
)
AUDIO = AudioInfo(index=1, codec="truehd", channels=8, bit_rate=None, language=None)


def argv_for(backend: str, profile: str, video: VideoInfo, hw_decode: bool) -> list[str]:
    target = Target(BACKENDS[backend], DEVICES[backend], hw_decode)
    media = MediaInfo(format="matroska", duration=60, bit_rate=None, video=video, audio=(AUDIO,))
    plan = make_plan(PROFILES[profile], media, target)
    return build_argv("ffmpeg", plan, PROFILES[profile], target, source_input("in.mkv"), "o.mp4")


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


CASES = list(
    itertools.product(
        ["software", "nvenc", "qsv", "vaapi"],
        ["h264-1080p", "hevc-1080p"],
        [False, True],
        [SDR_1080, HEVC_4K, replace(HEVC_4K, transfer=16, mastering=True)],
    )
)


@pytest.mark.parametrize(("backend", "profile", "hw_decode", "video"), CASES)
def test_common_rules(backend: str, profile: str, hw_decode: bool, video: VideoInfo) -> None:
    argv = argv_for(backend, profile, video, hw_decode)
    codec = PROFILES[profile].video.codec
    assert "-level" not in argv and "-compression_level" not in argv
    assert value(argv, "-c:v") == BACKENDS[backend].encoders[codec].codec
    assert value(argv, "-c:a") == "aac" and value(argv, "-ac") == "2"
    assert argv[-6:] == ["-movflags", "+faststart", "-f", "mp4", "-y", "o.mp4"]
    assert ("-tag:v" in argv) == (codec == "hevc") and (
        codec != "hevc" or value(argv, "-tag:v") == "hvc1"
    )
    chain = value(argv, "-vf")
    assert "format=" in chain, "the output pixel format is always explicit"
    hardware_decoding = "-hwaccel" in argv
    # Mesa has no VAAPI tone-mapper: HDR on the AMD device is decoded and tone-mapped on the CPU
    amd_hdr = backend == "vaapi" and video.hdr
    assert hardware_decoding == (hw_decode and backend != "software" and not amd_hdr)
    if hardware_decoding:
        assert argv.index("-hwaccel") < argv.index("-i")
    if video.hdr:
        assert "tonemap" in chain
    scaled = video.width > 1920
    assert ("w=1920:h=1080" in chain) == scaled


def test_nvenc_all_on_the_gpu() -> None:
    argv = argv_for("nvenc", "h264-1080p", HEVC_4K, hw_decode=True)
    assert argv[argv.index("-init_hw_device") + 1] == "cuda=cu:1"
    assert value(argv, "-filter_hw_device") == "cu"
    assert (value(argv, "-hwaccel"), value(argv, "-hwaccel_output_format")) == ("cuda", "cuda")
    assert value(argv, "-vf") == "scale_cuda=w=1920:h=1080:format=yuv420p"
    assert (value(argv, "-preset"), value(argv, "-rc")) == ("p4", "vbr")
    assert value(argv, "-b:v") == value(argv, "-maxrate") == "8000000"
    assert value(argv, "-bufsize") == "16000000" and value(argv, "-profile:v") == "high"


def test_nvenc_software_decode_uploads_from_system_memory() -> None:
    argv = argv_for("nvenc", "hevc-1080p", HEVC_4K, hw_decode=False)
    assert "-hwaccel" not in argv
    assert value(argv, "-vf") == "scale=w=1920:h=1080:flags=lanczos,format=yuv420p"
    assert value(argv, "-profile:v") == "main" and value(argv, "-c:v") == "hevc_nvenc"


def test_qsv_decodes_through_vaapi_and_maps_into_qsv() -> None:
    argv = argv_for("qsv", "h264-1080p", HEVC_4K, hw_decode=True)
    inits = [argv[i + 1] for i, a in enumerate(argv) if a == "-init_hw_device"]
    assert inits == ["vaapi=va:/dev/dri/renderD129,driver=iHD", "qsv=qs@va"]
    assert value(argv, "-filter_hw_device") == "qs"
    assert value(argv, "-vf") == (
        "scale_vaapi=w=1920:h=1080:format=nv12:extra_hw_frames=24,hwmap=derive_device=qsv,"
        "format=qsv"
    )
    assert value(argv, "-maxrate") == "8000001", "maxrate = bitrate + 1 forces VBR"
    assert value(argv, "-bufsize") == "32000000" and value(argv, "-preset") == "medium"
    assert value(argv, "-rc_init_occupancy") == "16000000" and value(argv, "-mbbrc") == "1"
    software = argv_for("qsv", "h264-1080p", SDR_1080, hw_decode=False)
    assert value(software, "-vf") == "format=nv12", "system-memory frames go to QSV as they are"


def test_vaapi() -> None:
    argv = argv_for("vaapi", "hevc-1080p", HEVC_4K, hw_decode=True)
    assert argv[argv.index("-init_hw_device") + 1] == "vaapi=va:/dev/dri/renderD128"
    assert value(argv, "-vf") == "scale_vaapi=w=1920:h=1080:format=nv12"
    assert value(argv, "-rc_mode") == "VBR" and value(argv, "-c:v") == "hevc_vaapi"
    software = argv_for("vaapi", "h264-1080p", HEVC_4K, hw_decode=False)
    assert value(software, "-vf") == "scale=w=1920:h=1080:flags=lanczos,format=nv12,hwupload"


def test_hdr_is_tone_mapped_on_the_device_or_in_software() -> None:
    hdr = replace(HEVC_4K, transfer=16, mastering=True)
    nvenc = value(argv_for("nvenc", "h264-1080p", hdr, hw_decode=True), "-vf")
    assert "tonemap_cuda=format=yuv420p:p=bt709:t=bt709:m=bt709:tonemap=bt2390" in nvenc
    qsv = value(argv_for("qsv", "h264-1080p", hdr, True), "-vf")
    assert "scale_vaapi=w=1920:h=1080:extra_hw_frames=24,tonemap_vaapi=format=nv12" in qsv
    # tonemap_vaapi takes HDR10 only, and Mesa (AMD) has none: HLG and AMD go to the CPU
    amd = value(argv_for("vaapi", "h264-1080p", replace(hdr, transfer=18), True), "-vf")
    assert "tonemap_vaapi" not in amd and SOFTWARE_TONEMAP in amd
    software = value(argv_for("software", "h264-1080p", hdr, hw_decode=False), "-vf")
    assert software == f"scale=w=1920:h=1080:flags=lanczos,{SOFTWARE_TONEMAP},format=yuv420p"


def test_copy_profile_keeps_any_playable_video() -> None:
    argv = argv_for("nvenc", "copy", HEVC_4K, hw_decode=True)
    assert value(argv, "-c:v") == "copy" and value(argv, "-tag:v") == "hvc1"
    assert "-init_hw_device" not in argv and "-hwaccel" not in argv
    vp9 = argv_for("software", "copy", replace(SDR_1080, codec="vp9"), hw_decode=False)
    assert value(vp9, "-c:v") == "libx264"


def test_hw_decode_is_not_used_for_a_codec_the_backend_cannot_decode() -> None:
    argv = argv_for("nvenc", "h264-1080p", replace(HEVC_4K, codec="prores"), hw_decode=True)
    assert "-hwaccel" not in argv
