"""Issue 12 on (fake) GPU hosts: which rungs a source gets, the probe's deinterlace and
libplacebo checks, the VAAPI driver's quirks, verification per rung, CUDA's device order."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import av
import pytest
from conftest import Env, StartApp, post_job, wait_status
from gpu_host import FakeHost, FakeNvml, start_fake
from media_cases import Cases

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.device import CPU, Device, Vendor
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.hardware import extra_checks
from optimized_versions.hardware.devices import Host
from optimized_versions.hardware.ladder import Hardware
from optimized_versions.hardware.matrix import LIBPLACEBO, Check, CheckKind, Matrix
from optimized_versions.media.plan import PlanError
from optimized_versions.media.probe import MediaInfo, VideoInfo

GPU = Device(id="nvidia:0", vendor=Vendor.NVIDIA, name="RTX")
INTEL = Device(id="dri:renderD128", vendor=Vendor.INTEL, name="Intel",
               render_node="/dev/dri/renderD128", va_driver="iHD")  # fmt: skip
AMD = replace(INTEL, id="dri:renderD129", vendor=Vendor.AMD, va_driver="radeonsi")
HEVC = VideoInfo(0, "hevc", 1920, 1080, "yuv420p10le", 10, 9_000_000)
PROFILE = load_profiles()["h264-1080p"]


def hardware(deinterlace: bool = True, placebo: bool = False) -> Hardware:
    """A host with an NVIDIA GPU and Intel and AMD render nodes whose probe said this."""
    ok = []
    for device, backend in ((GPU, "nvenc"), (INTEL, "vaapi"), (AMD, "vaapi")):
        ok += [(device.id, backend, CheckKind.ENCODE, "h264")]
        ok += [(device.id, backend, CheckKind.DECODE, c) for c in ("h264", "hevc", "hevc_10bit")]
        ok += [(device.id, backend, CheckKind.DEINTERLACE, "h264")] if deinterlace else []
    checks = [Check(*c, ok=True, reason="works") for c in ok]
    why = "works" if placebo else "Failed creating Vulkan device!"
    checks.append(Check("cpu", "software", CheckKind.FILTER, LIBPLACEBO, ok=placebo, reason=why))
    filters = frozenset({"scale_cuda", "tonemap_cuda", "scale_vaapi", "tonemap_vaapi"})
    matrix = Matrix("k", "ffmpeg 9", (CPU, GPU, INTEL, AMD), (), tuple(checks), filters)
    return Hardware("ffmpeg", load_backends(), Host(nvml=FakeNvml()), Path("/nonexistent"),
                    ["nvenc", "vaapi", "software"], time.monotonic, matrix=matrix)  # fmt: skip


def rungs(video: VideoInfo, **kwargs: bool) -> list[tuple[str, str, bool]]:
    media = MediaInfo("matroska", 60.0, None, video, ())
    ladder = hardware(**kwargs).ladder(PROFILE, media)
    return [(t.backend.name, t.device.id, t.hw_decode) for t in ladder]


def hw_decode_rungs(video: VideoInfo, **kwargs: bool) -> set[str]:
    return {device for _, device, hw in rungs(video, **kwargs) if hw}


@pytest.mark.parametrize(
    "video",
    [
        replace(HEVC, codec="h264"),  # Hi10P
        replace(HEVC, pix_fmt="yuv422p10le"),
        replace(HEVC, pix_fmt="yuv444p"),
        replace(HEVC, codec="h264", pix_fmt="yuv422p", bit_depth=8),
        replace(HEVC, rotation=90),
    ],
    ids=["hi10p", "hevc-422", "hevc-444", "h264-422", "rotated"],
)
def test_no_hardware_decode_rung_that_cannot_work(video: VideoInfo) -> None:
    assert hw_decode_rungs(HEVC) == {"nvidia:0", "dri:renderD128", "dri:renderD129"}
    assert rungs(video) == [
        ("nvenc", "nvidia:0", False),
        ("vaapi", "dri:renderD128", False),
        ("vaapi", "dri:renderD129", False),
        ("software", "cpu", False),
    ]


def test_interlaced_sources_decode_on_the_gpu_only_where_it_deinterlaces() -> None:
    interlaced = replace(HEVC, field_order="tff")
    assert len(hw_decode_rungs(interlaced)) == 3
    assert hw_decode_rungs(interlaced, deinterlace=False) == set()


def test_hdr_decodes_on_the_gpu_only_where_it_tone_maps() -> None:
    hdr10 = replace(HEVC, transfer=16, mastering=True)
    assert hw_decode_rungs(hdr10) == {"nvidia:0", "dri:renderD128"}, "no tone-mapper on Mesa"
    assert hw_decode_rungs(replace(hdr10, transfer=18)) == {"nvidia:0"}, "tonemap_vaapi: PQ"
    assert hw_decode_rungs(replace(hdr10, mastering=False)) == {"nvidia:0"}


def test_dolby_vision_profile_5_is_refused_clearly_or_converted() -> None:
    dv5 = replace(HEVC, dolby_vision=True)
    with pytest.raises(PlanError, match="Dolby Vision profile 5") as refused:
        rungs(dv5)
    assert "Failed creating Vulkan device!" in str(refused.value)
    assert "mesa-vulkan-drivers" in str(refused.value) and "graphics" in str(refused.value)
    assert hw_decode_rungs(dv5, placebo=True) == set()
    assert rungs(replace(dv5, transfer=16), placebo=False)[0][2], "8.1: HDR10 base layer"


# -- the probe and jobs on fake hosts -----------------------------------------------------


async def test_probe_checks_deinterlacers_like_scalers(fake: FakeHost) -> None:
    fake.set(hide=["bwdif_cuda"])
    hardware = Hardware(str(fake.ffmpeg), load_backends(), fake.host(nvidia=("RTX 4070",)),
                        fake.root / "hw.json", ["nvenc", "software"], time.monotonic)  # fmt: skip
    matrix = await hardware.load(refresh=True)
    check = next(c for c in matrix.checks if c.kind is CheckKind.DEINTERLACE)
    assert (check.ok, check.reason) == (False, "this ffmpeg has no bwdif_cuda filter")
    fake.set()
    matrix = await hardware.load(refresh=True)
    assert matrix.deinterlaces("nvidia:0", "nvenc")
    ran = [a for a in fake.ran() if any("bwdif_cuda" in x for x in a)]
    assert ran and "-hwaccel" in ran[-1] and "cuda=cu:0" in ran[-1]


async def test_i965_encodes_cbr(env: Env, start_app: StartApp, fake: FakeHost) -> None:
    fake.set(vaapi_driver="Intel i965 driver for Intel(R) Kaby Lake - 2.4.1")
    host = fake.host(dri={"renderD128": "0x8086"})
    client = await start_fake(env, start_app, fake, host, encoder_preference="vaapi,software")
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    assert (job["backend"], job["encoder"]) == ("vaapi", "h264_vaapi")
    encode = [a for a in fake.ran() if "h264_vaapi" in a and "-i" in a][-1]
    assert encode[encode.index("-rc_mode") + 1] == "CBR"


async def test_amd_hevc_extradata_makes_a_playable_hvc1(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    fake.set(vaapi_driver="Mesa Gallium driver 24.0.5 for AMD Radeon RX 6600 (radeonsi)")
    client = await start_fake(env, start_app, fake, fake.host(dri={"renderD128": "0x1002"}))
    job = await wait_status(
        client, await post_job(client, env, "h264", profile="hevc-1080p"), "completed"
    )
    encode = [a for a in fake.ran() if "hevc_vaapi" in a and "-i" in a][-1]
    assert encode[encode.index("-bsf:v") + 1] == "extract_extradata=remove=0"
    with av.open(job["outputPath"]) as out:  # the flags really mux (as libx265 here)
        video = out.streams.video[0]
        assert video.codec_context.codec_tag == "hvc1" and video.codec_context.extradata
        assert sum(1 for _ in out.decode(video)) == 72


async def test_a_short_hardware_output_steps_down(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    fake.set(short={"h264_nvenc": 1.0}, env_log=str(fake.root / "env.log"))
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    assert (job["backend"], job["encoder"]) == ("software", "libx264")
    assert len(job["fallbacks"]) == 2 and "the output lasts 1.00 s" in job["fallbacks"][0]
    logged = [json.loads(x) for x in (fake.root / "env.log").read_text().splitlines()]
    assert {order for argv, order in logged if "h264_nvenc" in argv} == {"PCI_BUS_ID"}


async def test_dolby_vision_job_converted_where_libplacebo_works(
    env: Env, start_app: StartApp, fake: FakeHost, cases: Cases
) -> None:
    env.jellyfin.items["dolby"] = cases.dolby
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    job = await wait_status(client, await post_job(client, env, "dolby"), "completed")
    assert (job["encoder"], job["decoder"]) == ("h264_nvenc", "software")
    encode = [a for a in fake.ran() if "h264_nvenc" in a and "-i" in a][-1]
    assert encode[encode.index("-vf") + 1].startswith("libplacebo=w=320:h=180:tonemapping=")


async def test_dolby_vision_job_refused_without_vulkan(
    env: Env, start_app: StartApp, fake: FakeHost, cases: Cases
) -> None:
    env.jellyfin.items["dolby"] = cases.dolby
    fake.set(fail={LIBPLACEBO: {"text": "Failed creating Vulkan device!", "times": -1}})
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    job = await wait_status(client, await post_job(client, env, "dolby"), "failed")
    assert "Dolby Vision profile 5" in job["error"] and "Vulkan" in job["error"]


@pytest.mark.parametrize(
    ("announced", "driver"),
    [
        ("Intel iHD driver for Intel(R) Gen Graphics - 24.1.0 ()", "iHD"),
        ("Intel i965 driver for Intel(R) Kaby Lake - 2.4.1", "i965"),
        (
            "Mesa Gallium driver 24.0.5 for AMD Radeon RX 6600 (radeonsi, navi23, LLVM 17)",
            "radeonsi",
        ),
        ("Splitted-Desktop Systems VDPAU backend for VA-API - 0.7.4", None),
    ],
)
def test_vaapi_driver_names(announced: str, driver: str | None) -> None:
    assert extra_checks.driver_name(announced) == driver
