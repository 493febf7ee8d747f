"""Hardware without a GPU: fake hosts and a fake ffmpeg that fails like real drivers do.

The fake ffmpeg (``fake_ffmpeg.py``) turns hardware command lines into real software
encodes, so probes and jobs produce real files; a scenario file makes chosen encoders
fail with the text real drivers print.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status
from gpu_host import NO_ENCODER, PREFERENCE, SESSION_CAP, FakeHost, FakeNvml, start_fake

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.hardware.devices import Host
from optimized_versions.hardware.ladder import Hardware
from optimized_versions.hardware.nvml import GpuInfo, Nvml
from optimized_versions.keys import HARDWARE, MONITOR
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.probe import MediaInfo, VideoInfo


async def probe(fake: FakeHost, host: Host) -> Hardware:
    hardware = Hardware(
        str(fake.ffmpeg), load_backends(), host, fake.root / "hw.json", PREFERENCE, time.monotonic
    )
    await hardware.load(refresh=True)
    return hardware


def works(hardware: Hardware) -> set[tuple[str, str, str, str]]:
    return {(c.device, c.backend, c.kind, c.codec) for c in hardware.matrix.checks if c.ok}


def reasons(hardware: Hardware, backend: str) -> set[str]:
    return {c.reason for c in hardware.matrix.checks if c.backend == backend and not c.ok}


MEDIA = MediaInfo(
    format="matroska",
    duration=3,
    bit_rate=None,
    audio=(),
    video=VideoInfo(0, "hevc", 1920, 1080, "yuv420p10le", 10, 9_000_000),
)


async def test_nvidia_host(fake: FakeHost) -> None:
    hardware = await probe(fake, fake.host(nvidia=("NVIDIA GeForce RTX 4070",)))
    ok = works(hardware)
    for codec in ("h264", "hevc", "hevc_10bit", "av1"):
        assert ("nvidia:0", "nvenc", "encode", codec) in ok
    assert ("nvidia:0", "nvenc", "decode", "hevc_10bit") in ok
    assert not any(c.backend in ("qsv", "vaapi") for c in hardware.matrix.checks)
    ladder = hardware.ladder(load_profiles()["h264-1080p"], MEDIA)
    assert [(t.backend.name, t.hw_decode) for t in ladder] == [
        ("nvenc", True),
        ("nvenc", False),
        ("software", False),
    ]
    probes = [argv for argv in fake.ran() if "h264_nvenc" in argv]
    assert probes and "-init_hw_device" in probes[0] and "cuda=cu:0" in probes[0]


async def test_gpu_without_encoder(fake: FakeHost) -> None:
    fake.set(
        fail={
            e: {"text": NO_ENCODER.replace("h264_nvenc", e), "times": -1}
            for e in ("h264_nvenc", "hevc_nvenc", "av1_nvenc")
        }
    )
    hardware = await probe(fake, fake.host(nvidia=("NVIDIA H100 80GB HBM3",)))
    assert reasons(hardware, "nvenc") == {"GPU found, no hardware encoder on it"}
    assert ("nvidia:0", "nvenc", "decode", "h264") in works(hardware), "NVDEC still decodes"
    ladder = hardware.ladder(load_profiles()["h264-1080p"], MEDIA)
    assert [t.backend.name for t in ladder] == ["software"]
    assert any("GPU found, no hardware encoder" in line for line in hardware.summary())


async def test_intel_host(fake: FakeHost) -> None:
    hardware = await probe(fake, fake.host(dri={"renderD128": "0x8086"}))
    ok = works(hardware)
    assert ("dri:renderD128", "qsv", "encode", "h264") in ok
    assert ("dri:renderD128", "vaapi", "encode", "hevc") in ok
    ladder = hardware.ladder(load_profiles()["hevc-1080p"], MEDIA)
    assert [t.backend.name for t in ladder] == ["qsv", "qsv", "vaapi", "vaapi", "software"]
    qsv = next(a for a in fake.ran() if "h264_qsv" in a)
    assert "vaapi=va:/dev/dri/renderD128,driver=iHD" in qsv


async def test_amd_host_with_a_mesa_that_lists_hevc_but_cannot(fake: FakeHost) -> None:
    fake.set(
        fail={
            "hevc_vaapi": {
                "text": "[hevc_vaapi @ 0x1] No usable encoding profile found.",
                "times": -1,
            }
        }
    )
    hardware = await probe(fake, fake.host(dri={"renderD129": "0x1002"}))
    ok = works(hardware)
    assert ("dri:renderD129", "vaapi", "encode", "h264") in ok
    assert ("dri:renderD129", "vaapi", "encode", "hevc") not in ok
    assert reasons(hardware, "vaapi") == {"the driver offers no encoding profile for this codec"}
    assert not any(c.backend == "qsv" for c in hardware.matrix.checks), "QSV is Intel only"
    assert [t.backend.name for t in hardware.ladder(load_profiles()["hevc-1080p"], MEDIA)] == [
        "software"
    ]


async def test_unreadable_render_node(fake: FakeHost) -> None:
    host = fake.host(dri={"renderD128": "0x8086"}, unreadable=frozenset({"/dev/dri/renderD128"}))
    hardware = await probe(fake, host)
    on_devices = {c for c in works(hardware) if c[2] != "filter"}  # libplacebo is host-wide
    assert on_devices == {("cpu", "software", "encode", c) for c in ("h264", "hevc", "hevc_10bit")}
    assert all(
        "add the container to the render group" in r
        for r in reasons(hardware, "qsv") | reasons(hardware, "vaapi")
    )
    assert not any("h264_qsv" in argv for argv in fake.ran()), "no test encode on a closed node"


async def test_a_driver_that_fails_once_is_retried(fake: FakeHost) -> None:
    fake.set(fail={"h264_nvenc": {"text": "[h264_nvenc] Device creation failed", "times": 1}})
    hardware = await probe(fake, fake.host(nvidia=("RTX A2000",)))
    assert ("nvidia:0", "nvenc", "encode", "h264") in works(hardware)


async def test_the_matrix_is_cached_until_something_changes(fake: FakeHost) -> None:
    host = fake.host(nvidia=("RTX A2000",))
    first = await probe(fake, host)
    runs = len(fake.ran())
    again = Hardware(
        str(fake.ffmpeg), load_backends(), host, fake.root / "hw.json", PREFERENCE, time.monotonic
    )
    assert await again.load() == first.matrix
    assert len(fake.ran()) == runs + 1  # only `-version`, to check the cache key
    newer = replace(host, nvml=FakeNvml([GpuInfo(0, "RTX A2000", 100)], driver="560.1"))
    changed = Hardware(
        str(fake.ffmpeg), load_backends(), newer, fake.root / "hw.json", PREFERENCE, time.monotonic
    )
    assert (await changed.load()).key != first.matrix.key


def test_real_probe_of_this_machine(tmp_path: Path) -> None:
    hardware = Hardware(
        default_ffmpeg(),
        load_backends(),
        Host(nvml=Nvml()),
        tmp_path / "hw.json",
        PREFERENCE,
        time.monotonic,
    )
    matrix = asyncio.run(hardware.load())
    assert matrix.encodes("cpu", "software", "h264") and matrix.encodes("cpu", "software", "hevc")
    if not any(d.vendor != "cpu" for d in matrix.devices):  # CI and development machines
        assert any("no NVIDIA GPU" in note for note in matrix.notes)
        assert [t.backend.name for t in hardware.ladder(load_profiles()["h264-1080p"], MEDIA)] == [
            "software"
        ]


# -- jobs on fake hardware, through the real app ---------------------------------------


async def test_a_job_falls_back_from_nvenc_to_software(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    fake.set(
        fail={"h264_nvenc": {"text": "[h264_nvenc] Cannot load libnvidia-encode.so.1", "times": -1}}
    )
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    assert (job["backend"], job["encoder"]) == ("software", "libx264")
    assert len(job["fallbacks"]) == 2
    assert "nvenc on nvidia:0 (hardware decode)" in job["fallbacks"][0]
    assert "NVIDIA_DRIVER_CAPABILITIES" in job["fallbacks"][0]


async def test_a_job_on_nvenc_records_it(env: Env, start_app: StartApp, fake: FakeHost) -> None:
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed", "failed")
    assert (job["backend"], job["encoder"], job["decoder"]) == ("nvenc", "h264_nvenc", "nvenc")
    assert "fallbacks" not in job
    hardware = await (await client.get("/hardware", headers=auth())).json()
    assert hardware["devices"][1]["name"] == "RTX 3060"
    assert (await client.get("/hardware")).status == 401


async def test_the_session_cap_requeues_instead_of_failing(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    env.now = 1_800_000_000.0
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("GeForce GTX 1660",)))
    fake.set(fail={"h264_nvenc": {"text": SESSION_CAP, "times": 1}})
    job_id = await post_job(client, env, "hevc")
    waiting = await wait_status(client, job_id, "queued")
    for _ in range(100):
        waiting = await (await client.get(f"/job-status/{job_id}", headers=auth(ADMIN))).json()
        if "waitReason" in waiting:
            break
        await asyncio.sleep(0.02)
    assert "NVENC encode sessions are in use" in waiting["waitReason"]
    assert waiting["status"] == "queued" and "error" not in waiting
    load = await (await client.get("/hardware", headers=auth())).json()
    assert load["load"]["devices"]["nvidia:0"]["slots"] == 0, "believed full until a reading"
    env.now += 31
    client.app[MONITOR].sample()  # the next reading: the other process's session is gone
    done = await wait_status(client, job_id, "completed", "failed")
    assert (done["status"], done["encoder"]) == ("completed", "h264_nvenc")


async def test_require_hw_fails_clearly_without_hardware(
    env: Env, start_app: StartApp, fake: FakeHost, tmp_path: Path
) -> None:
    user = tmp_path / "user"
    (user / "profiles").mkdir(parents=True)
    (user / "profiles" / "gpu-only.yaml").write_text(
        "name: gpu-only\ncontainer: mp4\nhardware: require_hw\n"
        "video: {codec: h264, max_width: 1920, max_height: 1080, max_bitrate: 8000000}\n"
        "audio: {codec: aac, channels: 2, bitrate: 128000}\n"
    )
    fake.set(
        fail={
            e: {"text": NO_ENCODER, "times": -1} for e in ("h264_nvenc", "hevc_nvenc", "av1_nvenc")
        }
    )
    client = await start_fake(
        env, start_app, fake, fake.host(nvidia=("NVIDIA H100",)), profiles_dir=user
    )
    job = await wait_status(
        client, await post_job(client, env, "hevc", profile="gpu-only"), "failed", "completed"
    )
    assert job["status"] == "failed"
    assert "requires a hardware encoder and none works for h264" in job["error"]
    assert "GPU found, no hardware encoder on it" in job["error"]


async def test_a_lost_device_is_taken_out_of_use(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    client = await start_fake(env, start_app, fake, fake.host(dri={"renderD128": "0x1002"}))
    fake.set(
        fail={
            "h264_vaapi": {
                "text": "Failed to initialise VAAPI connection: -1 (unknown)",
                "times": -1,
            }
        }
    )
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed", "failed")
    assert (job["status"], job["backend"]) == ("completed", "software")
    assert len(job["fallbacks"]) == 1, "the lost device's other rung is skipped"
    hardware = await (await client.get("/hardware", headers=auth())).json()
    assert "dri:renderD128" in hardware["outOfUse"]


async def test_no_token_in_logs_or_fallbacks_when_ffmpeg_prints_the_url(
    env: Env, start_app: StartApp, fake: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    leak = f"{env.jellyfin_url}/Videos/hevc/stream?static=true&api_key={ALICE}: I/O error"
    fake.set(fail={"h264_nvenc": {"text": leak, "times": -1}})
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    assert len(job["fallbacks"]) == 2
    assert ALICE not in json.dumps(job) and "REDACTED" in job["fallbacks"][0]
    assert ALICE not in caplog.text


async def test_an_admin_can_probe_again(env: Env, start_app: StartApp, fake: FakeHost) -> None:
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX 3060",)))
    before = await (await client.get("/hardware", headers=auth())).json()
    assert "nvenc h264 on nvidia:0: works" in before["summary"]
    fake.set(fail={"h264_nvenc": {"text": NO_ENCODER, "times": -1}})
    assert (await client.post("/hardware/probe", headers=auth())).status == 403
    resp = await client.post("/hardware/probe", headers=auth(ADMIN))
    after = await resp.json()
    assert (
        "nvenc h264 on nvidia:0: not used: GPU found, no hardware encoder on it" in after["summary"]
    )
    assert client.app[HARDWARE].matrix.key == after["key"]


def _hung(path: Path, real: str | None) -> str:
    """An ffmpeg that hangs: on everything, or (with ``real``) on all but the listings."""
    listing = (
        f'case "$2" in -version|-encoders|-filters) exec "{real}" "$@";; esac\n' if real else ""
    )
    path.write_text(f"#!/bin/sh\n{listing}exec sleep 600\n")
    path.chmod(0o755)
    return str(path)


async def test_a_hung_ffmpeg_does_not_hang_the_start(
    env: Env, start_app: StartApp, tmp_path: Path
) -> None:
    started = time.monotonic()
    client = await start_app(
        ffmpeg_path=_hung(tmp_path / "ffmpeg", None),
        probe_timeout=0.5,
        hardware_cache=tmp_path / "hw.json",
    )
    assert time.monotonic() - started < 10
    body = await (await client.get("/hardware", headers=auth())).json()
    software = next(v for v in body["backends"] if v["backend"] == "software")
    assert software == {
        "backend": "software",
        "verdict": "not used",
        "reason": "ffmpeg did not answer -version within 0.5 s",
    }
    job = await wait_status(client, await post_job(client, env, "h264"), "failed")
    assert job["error"]


async def test_a_test_encode_that_hangs_is_given_up(tmp_path: Path) -> None:
    hardware = Hardware(
        _hung(tmp_path / "ffmpeg", default_ffmpeg()),
        load_backends(),
        FakeHost(tmp_path, tmp_path / "s.json", tmp_path / "f").host(),
        tmp_path / "hw.json",
        PREFERENCE,
        time.monotonic,
        probe_timeout=0.3,
    )
    started = time.monotonic()
    await hardware.load()
    assert time.monotonic() - started < 15
    assert {c.reason for c in hardware.matrix.checks} == {"the test did not finish within 0.3 s"}


async def test_every_preferred_backend_gets_a_verdict(fake: FakeHost) -> None:
    hardware = await probe(fake, fake.host())  # no GPU at all
    verdicts = {v["backend"]: (v["verdict"], v["reason"]) for v in hardware.verdicts()}
    assert verdicts["nvenc"] == (
        "not tried",
        "no NVIDIA GPU (NVML could not start: Driver Not Loaded)",
    )
    drm = fake.root / "drm"
    for name in ("qsv", "vaapi"):
        assert verdicts[name] == ("not tried", f"no Intel or AMD render node under {drm}")
    assert verdicts["software"][0] == "works" and "h264 on cpu" in verdicts["software"][1]
    amd = await probe(fake, fake.host(dri={"renderD128": "0x1002"}))
    verdicts = {v["backend"]: (v["verdict"], v["reason"]) for v in amd.verdicts()}
    assert verdicts["qsv"] == ("not tried", "no intel GPU found"), "QSV is Intel only"
    assert verdicts["vaapi"][0] == "works"
    assert "nvenc: not tried: no NVIDIA GPU" in "\n".join(amd.summary())
