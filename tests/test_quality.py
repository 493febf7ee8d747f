"""Measured quality: VMAF on sampled windows with real encodes of tiny generated clips, the
decode check, the per-title target search, and the quality on the job, its page, /metrics."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import ADMIN, Env, StartApp, post_job, wait_status
from test_metrics import samples, value
from web_helpers import sign_in

from optimized_versions.catalog.backends import TargetSpec, load_backends
from optimized_versions.catalog.device import Device, Vendor
from optimized_versions.catalog.loader import shipped_dir
from optimized_versions.catalog.profiles import Profile, load_profiles
from optimized_versions.jobs import assess
from optimized_versions.jobs.outcome import MalformedReport, Outcome
from optimized_versions.media import ffmpeg, probe, quality, target
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.plan import Target, build_argv, make_plan, source_input

BACKENDS = load_backends()
PROFILES = load_profiles()
FFMPEG = default_ffmpeg()
SIX_SECONDS = "size=320x180:rate=25:duration=6"
SPANS = quality.windows(6.0, count=2, seconds=2.0)  # two seeks into each file, not the whole


def make(path: Path, graph: str, *codec: str) -> Path:
    argv = [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", graph, *codec, str(path)]
    subprocess.run(argv, check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Lossless (FFV1: never copied) sources: an easy synthetic picture and the same under
    heavy moving grain; and encodes of the easy one, generous and starved."""
    folder = tmp_path_factory.mktemp("quality")
    easy = make(folder / "easy.mkv", f"testsrc2={SIX_SECONDS}", "-c:v", "ffv1")
    hard = make(
        folder / "hard.mkv", f"testsrc2={SIX_SECONDS},noise=alls=30:allf=t+u", "-c:v", "ffv1"
    )
    x264 = ["-c:v", "libx264", "-preset", "veryfast"]
    generous = make(folder / "generous.mp4", f"testsrc2={SIX_SECONDS}", *x264, "-crf", "18")
    starved = make(
        folder / "starved.mp4",
        f"testsrc2={SIX_SECONDS}",
        *x264, "-b:v", "20k", "-maxrate", "20k", "-bufsize", "40k",
    )  # fmt: skip
    green = make(folder / "green.mp4", f"color=c=green:{SIX_SECONDS}", *x264, "-crf", "18")
    return {"easy": easy, "hard": hard, "generous": generous, "starved": starved, "green": green}


def reference(source: Path) -> quality.Reference:
    clock = quality.Clock.of(probe.probe(str(source)))
    return quality.Reference(source_input(str(source)), 0, "", (320, 180), clock)


async def test_a_starved_encode_scores_lower_than_a_generous_one(clips: dict[str, Path]) -> None:
    ref = reference(clips["easy"])
    generous = await quality.measure(FFMPEG, clips["generous"], ref, SPANS, "default")
    starved = await quality.measure(FFMPEG, clips["starved"], ref, SPANS, "default")
    assert generous.mean > 90 and generous.frames == 100  # 2 windows of 2 s at 25 fps
    assert starved.mean < generous.mean - 15, (starved, generous)
    assert starved.worst <= starved.mean and starved.low <= starved.worst
    assert generous.worst_at in (0.5, 3.5) and generous.seconds == 4.0
    phone = await quality.measure(FFMPEG, clips["starved"], ref, SPANS, "phone")
    assert phone.mean > starved.mean  # the phone model forgives more on a small screen


async def test_the_source_against_itself_scores_about_100(clips: dict[str, Path]) -> None:
    """The harness pairs frames by number: an encode's own frames are never off by one."""
    ref = reference(clips["hard"])
    itself = await quality.measure(FFMPEG, clips["hard"], ref, SPANS, "default")
    assert itself.mean > 99, itself


async def test_windows_line_up_in_an_mpeg_ts_source_that_seeks_late(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """MPEG-TS starts at 1.4 s and its demuxer lands on the key frame after the point asked:
    the windows are cut by each file's own clock, so a good encode still scores as one."""
    ts = make(tmp_path / "src.ts", f"testsrc2={SIX_SECONDS}", "-c:v", "libx264", "-g", "50")
    encode = tmp_path / "encode.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(ts), "-crf", "18", str(encode)], check=True)
    assert quality.Clock.of(probe.probe(str(ts))).margin == quality.SEEK_MARGIN
    found = await quality.measure(FFMPEG, encode, reference(ts), SPANS, "default")
    assert found.mean > 90 and found.worst > 90, found


async def test_a_corrupted_output_fails_the_decode_check(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    data = bytearray(clips["generous"].read_bytes())
    for at in range(len(data) // 4, len(data) * 3 // 4, 997):  # the middle of the frames
        data[at : at + 64] = bytes(range(64))
    broken.write_bytes(bytes(data))
    with pytest.raises(quality.QualityError, match="does not decode at 0:00:0"):
        await quality.measure(FFMPEG, broken, reference(clips["easy"]), SPANS, "default")


async def test_a_picture_unlike_the_source_fails_the_check(clips: dict[str, Path]) -> None:
    """Green frames decode without an error; VMAF says they are not the film."""
    with pytest.raises(quality.QualityError, match="not the source's"):
        await quality.measure(FFMPEG, clips["green"], reference(clips["easy"]), SPANS, "default")


def test_windows_spread_over_the_film_and_a_short_one_is_whole() -> None:
    spans = quality.windows(5400.0)
    assert [s.start for s in spans] == [538.0, 1618.0, 2698.0, 3778.0, 4858.0]
    assert {s.seconds for s in spans} == {4.0}
    assert quality.windows(12.0) == [quality.Window(0.0, 12.0)]
    assert quality.windows(None) == [quality.Window(0.0, 4.0)]


def target_profile(goal: float = 93.0) -> Profile:
    base = PROFILES["h264-1080p"]
    return dataclasses.replace(base, video=dataclasses.replace(base.video, target_vmaf=goal))


async def aim(source: Path, profile: Profile) -> tuple[target.Pick, quality.Quality]:
    """Search, then encode the whole clip at the pick and score all of it."""
    info = probe.probe(str(source), 10)
    assert info.video is not None
    software = Target(BACKENDS["software"])
    plan = make_plan(profile, info, software)
    inputs = source_input(str(source), info.format)
    ref = quality.reference(plan, inputs, info)
    assert ref is not None
    pick = await target.aim(FFMPEG, plan, profile, software, ref, SPANS)
    out = source.with_suffix(".aimed.mp4")
    aimed = dataclasses.replace(plan, quality=pick.value)
    argv = build_argv(FFMPEG, aimed, profile, software, inputs, str(out))
    await ffmpeg.run(argv, lambda _: None, stall_timeout=60, stop_grace=5)
    whole = await quality.measure(FFMPEG, out, ref, [quality.Window(0.0, 6.0)], "default")
    return pick, whole


async def test_the_target_picks_more_bits_for_a_hard_clip_and_lands_near_it(
    clips: dict[str, Path],
) -> None:
    profile = target_profile(93.0)
    easy, easy_whole = await aim(clips["easy"], profile)
    hard, hard_whole = await aim(clips["hard"], profile)
    assert easy.value > hard.value + 2, (easy, hard)  # CRF: higher is fewer bits
    assert easy.bit_rate < hard.bit_rate
    for pick, whole in ((easy, easy_whole), (hard, hard_whole)):
        assert pick.note is None and pick.vmaf >= 93.0
        assert len(pick.probes) <= target.MAX_PROBES
        assert abs(whole.mean - 93.0) <= 1.5, whole  # on the whole clip, not the samples


def model(slope: float, rate_at_16: int) -> Callable[[float], Awaitable[target.Probe]]:
    """A probe whose VMAF falls ``slope`` a step from 99 at 16, bits 11% a step."""

    async def probe_at(v: float) -> target.Probe:
        return target.Probe(v, 99 - slope * (v - 16), int(rate_at_16 * 0.89 ** (v - 16)))

    return probe_at


X264 = TargetSpec(("-crf", "{quality}"), 16, 32, 0.5)
ICQ = TargetSpec(("-global_quality", "{quality}"), 16, 40, 1)


async def test_the_search_takes_the_highest_value_that_reaches_the_target() -> None:
    pick = await target.search(model(1.5, 4_000_000), X264, 90.0, 23.0, 8_000_000)
    assert pick.value == 22.0 and pick.vmaf >= 90.0 and pick.note is None  # 99 - 1.5 * 6
    assert len(pick.probes) <= target.MAX_PROBES


async def test_a_target_out_of_reach_says_capped() -> None:
    # an encoder that holds no cap (ICQ) gives 12 Mb/s at the value that would reach it
    pick = await target.search(model(1.0, 20_000_000), ICQ, 95.0, 23.0, 8_000_000)
    assert pick.bit_rate <= 8_000_000 * target.OVER_CAP, pick
    assert pick.note is not None and pick.note.startswith("capped at 8 Mb/s: VMAF 9"), pick


def test_the_gpu_target_args_aim_at_a_quality_under_the_cap() -> None:
    """As data: NVENC -cq in VBR with -b:v 0, QSV ICQ without a bit rate, VAAPI QVBR on
    Intel and constant QP on AMD; the software encoder's CRF takes half steps."""
    source = probe.MediaInfo(
        "matroska", 60.0, None, probe.VideoInfo(0, "hevc", 3840, 2160, "yuv420p", 8, None), ()
    )
    profile = target_profile()
    devices = {
        "nvenc": Device(id="nvidia:0", vendor=Vendor.NVIDIA, name="RTX", index=0),
        "qsv": Device(id="dri:a", vendor=Vendor.INTEL, name="Arc", render_node="/dev/dri/a"),
        "vaapi": Device(id="dri:b", vendor=Vendor.AMD, name="RX", render_node="/dev/dri/b"),
    }

    def argv(backend: str, device: Device | None = None) -> list[str]:
        rung = Target(
            BACKENDS[backend], device or devices.get(backend) or Target(BACKENDS[backend]).device
        )
        plan = dataclasses.replace(make_plan(profile, source, rung), quality=27.0)
        return build_argv("ffmpeg", plan, profile, rung, source_input("in.mkv"), "o.mp4")

    def opt(args: list[str], flag: str) -> str:
        return args[args.index(flag) + 1]

    nvenc = argv("nvenc")
    assert (opt(nvenc, "-rc"), opt(nvenc, "-cq"), opt(nvenc, "-b:v")) == ("vbr", "27", "0")
    assert opt(nvenc, "-maxrate") == "8000000"
    qsv = argv("qsv")
    assert opt(qsv, "-global_quality") == "27" and "-b:v" not in qsv and "-maxrate" not in qsv
    amd = argv("vaapi")
    assert (opt(amd, "-rc_mode"), opt(amd, "-global_quality")) == ("CQP", "27")
    intel = Device(id="dri:c", vendor=Vendor.INTEL, name="UHD", render_node="/dev/dri/c")
    ihd = argv("vaapi", intel)
    assert (opt(ihd, "-rc_mode"), opt(ihd, "-maxrate")) == ("QVBR", "8000000")
    half = dataclasses.replace(
        make_plan(profile, source, Target(BACKENDS["software"])), quality=24.5
    )
    x264 = build_argv("ffmpeg", half, profile, Target(BACKENDS["software"]), ["-i", "x"], "o.mp4")
    assert opt(x264, "-crf") == "24.5"


def test_a_worker_report_carries_the_quality_and_nothing_malformed() -> None:
    report = {
        "size": 10, "checksum": "0" * 64, "backend": "software", "encoder": "libx264",
        "decoder": "software", "device": "cpu",
        "quality": {"metric": "vmaf", "model": "default", "mean": 93.2, "frames": 500},
    }  # fmt: skip
    assert Outcome.from_report(report).quality == report["quality"]
    for bad in ({"mean": 500}, {"mean": "93"}, {"secret": "x"}):
        with pytest.raises(MalformedReport, match=r"the report\.quality"):
            Outcome.from_report({**report, "quality": bad})


async def test_a_finished_job_carries_its_quality_everywhere(env: Env, start_app: StartApp) -> None:
    client = await start_app(metrics="open")
    job_id = await post_job(client, env, "hevc")  # HEVC 10-bit: encoded to H.264
    done = await wait_status(client, job_id, "completed")
    got = done["quality"]
    assert (got["metric"], got["model"]) == ("vmaf", "default")
    assert got["secondsSampled"] == pytest.approx(3.0, abs=0.05)  # shorter than 5 windows: all
    assert 50 < got["mean"] <= 100 and got["frames"] == 72  # the whole 3 s at 24 fps
    assert got["worstWindow"] == got["mean"] and "setting" not in got  # no target: no search
    found = samples(await (await client.get("/metrics")).text())
    labels = {"profile": "h264-1080p", "encoder": "libx264"}
    assert value(found, "ovs_output_vmaf_count", **labels) == 1
    assert value(found, "ovs_output_vmaf_sum", **labels) == pytest.approx(got["mean"], abs=0.01)
    assert (await sign_in(client, token=ADMIN)).status == 303
    page = await (await client.get(f"/jobs/{job_id}")).text()
    assert f"VMAF {got['mean']:.1f} over 3 s sampled" in page
    assert f"VMAF {got['mean']:.1f}" in await (await client.get("/")).text()  # the history

    restarted = await start_app()  # stored: the same figures after a restart
    again = await wait_status(restarted, job_id, "completed")
    assert again["quality"] == got

    copied = await wait_status(client, await post_job(client, env, "h264"), "completed")
    assert copied["encoder"] == "copy" and "quality" not in copied  # nothing was encoded


async def test_a_target_profile_searches_and_the_job_says_what_it_chose(
    env: Env, start_app: StartApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    (user / "profiles").mkdir(parents=True)
    text = (
        (shipped_dir("profiles") / "h264-1080p.yaml")
        .read_text()
        .replace("name: h264-1080p", "name: aimed")
    )
    text = text.replace("  quality: 23 ", "  target_vmaf: 90\n  quality: 23 ")
    (user / "profiles" / "aimed.yaml").write_text(text)
    monkeypatch.setattr(assess, "SEARCH_MIN_SECONDS", 0.0)  # the 3 s clip is searched too
    client = await start_app(profiles_dir=user)
    done = await wait_status(
        client, await post_job(client, env, "hevc", profile="aimed"), "completed"
    )
    got = done["quality"]
    assert got["target"] == 90 and got["setting"].startswith("crf ") and got["probes"] >= 1
    # the samples are the whole clip here: the output measures what its probe did
    assert got["sampledVmaf"] >= 90 and abs(got["mean"] - got["sampledVmaf"]) < 0.5
    assert (await sign_in(client, token=ADMIN)).status == 303
    page = await (await client.get(f"/jobs/{done['id']}")).text()
    assert f"-crf {got['setting'][4:]} " in page  # the encode ran at the chosen value
    assert f"{got['setting']} chosen for VMAF 90 in {got['probes']} probes" in page
