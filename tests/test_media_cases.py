"""Issue 12 on the software path: real encodes of generated sources with the bundled ffmpeg,
through the planner's own argv; the outputs are looked at the way a player would."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import Env, StartApp, post_job, wait_status
from media_cases import Cases, gray_frame, idet, peak_db, rms_db

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import Profile, load_profiles
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.plan import Plan, Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import probe

PROFILES = load_profiles()
SOFTWARE = Target(load_backends()["software"])


def encode(
    source: Path,
    out: Path,
    profile: Profile = PROFILES["h264-1080p"],
    drop: tuple[str, ...] = (),
    downmix: str = "default",
) -> tuple[Plan, list[str]]:
    """Plan and run one job's ffmpeg; ``drop`` takes options out (to show what they fix)."""
    plan = make_plan(profile, probe(str(source)), SOFTWARE, downmix=downmix)
    inputs = source_input(str(source))
    argv = build_argv(default_ffmpeg(), plan, profile, SOFTWARE, inputs, str(out))
    for flag in drop:
        at = argv.index(flag)
        del argv[at : at + 2]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return plan, argv


def frames(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


@pytest.mark.parametrize(("case", "parity"), [("tff", "tff"), ("dvd", "bff")])
def test_interlaced_sources_come_out_progressive(
    cases: Cases, tmp_path: Path, case: str, parity: str
) -> None:
    source = getattr(cases, case)
    assert idet(source)[parity] > 40, "the source really is interlaced"
    out = tmp_path / "out.mp4"
    plan, argv = encode(source, out)
    assert not plan.copy_video and plan.deinterlace == parity
    chain = argv[argv.index("-vf") + 1]
    assert chain.startswith(f"bwdif=mode=0:parity={0 if parity == 'tff' else 1}:deint=all")
    seen = idet(out)  # idet's multi-frame verdict needs a few frames to settle
    assert seen["progressive"] >= 0.9 * sum(seen.values()), seen
    assert frames(out) == frames(source), "one frame per frame at the source's rate"


def test_unsignalled_interlacing_is_found_by_idet(cases: Cases, tmp_path: Path) -> None:
    with av.open(str(cases.combed)) as box:
        assert box.streams.video[0].codec_context.field_order == 0, "nothing signalled"
    info = probe(str(cases.combed))
    assert info.video is not None and info.video.field_order == "tff"
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.combed, out)
    assert plan.deinterlace == "tff"
    seen = idet(out)
    assert seen["progressive"] >= 0.9 * sum(seen.values()), seen
    progressive = probe(str(out))  # and a progressive source is not taken for interlaced
    assert progressive.video is not None and progressive.video.field_order == "progressive"


def test_field_rate_when_the_profile_says_so(cases: Cases, tmp_path: Path) -> None:
    base = PROFILES["h264-1080p"]
    sport = replace(base, video=replace(base.video, deinterlace="field"))
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.tff, out, sport)
    assert plan.field_rate and plan.gop == 250  # 5 s at 50p
    with av.open(str(out)) as box:
        assert box.streams.video[0].average_rate == 50
    assert frames(out) == 2 * frames(cases.tff)
    seen = idet(out)
    assert seen["progressive"] >= 0.9 * sum(seen.values()), seen


def test_anamorphic_dvd_keeps_its_display_aspect(cases: Cases, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.dvd, out)
    assert (plan.width, plan.height, plan.scale) == (720, 480, False)
    with av.open(str(out)) as box:
        video = box.streams.video[0]
        assert video.sample_aspect_ratio == Fraction(32, 27)
        assert video.display_aspect_ratio == Fraction(16, 9)


def test_rotated_phone_video_plays_upright(cases: Cases, tmp_path: Path) -> None:
    source_w, source_h, source_pixels = gray_frame(cases.phone)
    assert (source_w, source_h) == (180, 320) and source_pixels[0] > 200, "white top as shown"
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.phone, out)  # HEVC: re-encoded to H.264
    assert (plan.width, plan.height, plan.scale) == (180, 320, False), "portrait, not squeezed"
    width, height, pixels = gray_frame(out)
    assert (width, height) == (180, 320)
    top, bottom = pixels[: width * 40], pixels[-width * 40 :]
    assert sum(top) / len(top) > 200 and sum(bottom) / len(bottom) < 50, "upright"
    with av.open(str(out)) as box:
        assert box.streams.video[0].sample_aspect_ratio in (None, Fraction(1, 1))


def test_rotated_phone_video_copied_keeps_its_rotation(cases: Cases, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.phone, out, PROFILES["hevc-1080p"])
    assert plan.copy_video
    width, height, pixels = gray_frame(out)
    assert (width, height) == (180, 320) and sum(pixels[: width * 40]) / (width * 40) > 200


def test_odd_sized_444_becomes_even_420(cases: Cases, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.odd, out)
    assert (plan.width, plan.height) == (852, 480)
    with av.open(str(out)) as box:
        video = box.streams.video[0].codec_context
        assert (video.width, video.height, video.pix_fmt) == (852, 480, "yuv420p")
        shown = Fraction(video.width, video.height) * (video.sample_aspect_ratio or 1)
        assert abs(float(shown) - 853 / 481) < 0.01


def test_hi10p_becomes_8_bit_high(cases: Cases, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    plan, _ = encode(cases.hi10p, out)
    assert not plan.copy_video and not plan.hw_decode
    with av.open(str(out)) as box:
        video = box.streams.video[0].codec_context
        assert (video.pix_fmt, video.profile) == ("yuv420p", "High")
    assert frames(out) == frames(cases.hi10p)


def test_variable_frame_rate_keeps_every_frame(cases: Cases, tmp_path: Path) -> None:
    assert frames(cases.vfr) == 168
    kept = tmp_path / "kept.mp4"
    encode(cases.vfr, kept)
    assert frames(kept) == 168
    forced = tmp_path / "forced.mp4"
    encode(cases.vfr, forced, drop=("-fps_mode:v", "-enc_time_base:v"))  # constant: MP4's default
    assert frames(forced) < 120, "without -fps_mode vfr the 60p part is decimated"
    with av.open(str(kept)) as box:
        times = [frame.time for frame in box.decode(video=0)]
    steps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
    assert min(steps) >= 0.016 and max(steps) <= 0.042, "24p then 60p, each at its own pace"


def test_a_bare_downmix_clips(cases: Cases, tmp_path: Path) -> None:
    out = tmp_path / "bare.m4a"
    argv = [default_ffmpeg(), "-v", "error", "-i", str(cases.surround), "-vn"]
    subprocess.run([*argv, "-c:a", "aac", "-ac", "2", str(out)], check=True, timeout=60)
    assert peak_db(cases.surround) < -2.9
    assert peak_db(out) > 1.0


@pytest.mark.parametrize("downmix", ["default", "dave750", "nightmode", "rfc7845"])
def test_no_downmix_clips(cases: Cases, tmp_path: Path, downmix: str) -> None:
    out = tmp_path / "out.mp4"
    plan, argv = encode(cases.surround, out, downmix=downmix)
    assert plan.copy_video and plan.audio_filter is not None
    assert argv[argv.index("-af") + 1] == plan.audio_filter
    assert peak_db(out) < -0.1


def test_dialogue_level_by_downmix(cases: Cases, tmp_path: Path) -> None:
    """The dialogue-only stretch: the centre at 0.707 (default), 0.5 (dave750), 1 (night)."""
    level = {}
    for downmix in ("default", "dave750", "nightmode"):
        out = tmp_path / f"{downmix}.mp4"
        encode(cases.surround, out, downmix=downmix)
        level[downmix] = rms_db(out, 3.5, 5.5)
    assert level["nightmode"] - level["default"] == pytest.approx(3.0, abs=0.5)
    assert level["dave750"] - level["default"] == pytest.approx(-3.0, abs=0.5)


async def test_chapters_tags_default_audio_and_title_survive(
    env: Env, start_app: StartApp, cases: Cases
) -> None:
    env.jellyfin.items["chapters"] = cases.chapters
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "chapters"), "completed")
    with av.open(job["outputPath"]) as out:
        assert out.metadata.get("title") == "Film chapters"  # the item's Name
        assert "comment" not in out.metadata and "ripped" not in str(out.metadata)
        assert [c["metadata"]["title"] for c in out.chapters()] == ["Opening", "Ending"]
        video, audio = out.streams.video[0], out.streams.audio
        assert video.language == "eng" and video.metadata.get("name") == "Main feature"
        assert len(audio) == 1 and audio[0].language == "fra", "the track flagged default"
        assert audio[0].metadata.get("name") == "Français 5.1"
