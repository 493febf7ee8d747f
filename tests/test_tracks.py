"""Issue 11: subtitles and audio tracks kept as the user chose them, on generated media run
through the real app (and the bundled ffmpeg), the output read back with PyAV."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import pytest
from av.stream import Disposition
from av.subtitles.subtitle import AssSubtitle
from conftest import ALICE, Env, StartApp, wait_status
from test_validation import schema_validator

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.profiles import AudioSpec, load_profiles
from optimized_versions.jobs.models import JobStatus
from optimized_versions.jobs.rows import SCHEMA
from optimized_versions.jobs.store import JobStore
from optimized_versions.media import ffmpeg
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.plan import Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import AudioInfo, MediaInfo, VideoInfo, probe

PROFILES = load_profiles()
SOFTWARE = Target(load_backends()["software"])
ENGLISH = "1\n00:00:00,500 --> 00:00:02,000\nHello there\n\n2\n00:00:02,000 --> 00:00:02,800\nBye\n"
SPANISH = "1\n00:00:01,000 --> 00:00:02,000\nHola\n"
FRENCH_ASS = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, \
Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, \
Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,\
0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\\i1}Bonjour{\\i0}
"""


@dataclass(frozen=True)
class Subbed:
    """An MKV with H.264 (fits every profile), two audio tracks and three text subtitles.

    Streams: 0 video; 1 AAC stereo eng (default); 2 AC-3 stereo fre;
    3 SubRip eng; 4 ASS fre (forced); 5 SubRip spa "Commentary"."""

    path: Path


def _ffmpeg(*args: str) -> None:
    subprocess.run([default_ffmpeg(), "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def subbed(tmp_path_factory: pytest.TempPathFactory) -> Subbed:
    folder = tmp_path_factory.mktemp("subbed")
    (folder / "en.srt").write_text(ENGLISH)
    (folder / "fr.ass").write_text(FRENCH_ASS)
    (folder / "es.srt").write_text(SPANISH)
    path = folder / "subbed.mkv"
    _ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=3"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=3"),
        *("-f", "lavfi", "-i", "sine=frequency=880:duration=3"),
        *("-i", str(folder / "en.srt"), "-i", str(folder / "fr.ass")),
        *("-i", str(folder / "es.srt")),
        *("-map", "0:v", "-map", "1:a", "-map", "2:a"),
        *("-map", "3:s", "-map", "4:s", "-map", "5:s"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"),
        *("-c:a:0", "aac", "-ac:a:0", "2", "-c:a:1", "ac3", "-ac:a:1", "2", "-c:s", "copy"),
        *("-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre"),
        *("-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fre"),
        *("-metadata:s:s:2", "language=spa", "-metadata:s:s:2", "title=Commentary"),
        *("-disposition:a:0", "default", "-disposition:a:1", "0"),
        *("-disposition:s:0", "0", "-disposition:s:1", "forced", "-disposition:s:2", "0"),
        str(path),
    )
    return Subbed(path)


def cues(path: str, stream: int) -> list[str]:
    """The text of each cue of a subtitle stream, as a player's decoder gives it."""
    texts = []
    with av.open(path) as box:
        for packet in box.demux(box.streams[stream]):
            for subtitle in packet.decode():
                assert isinstance(subtitle, AssSubtitle), "a text track"
                # the dialogue without ASS override tags ({\\i1}: mov_text keeps italics)
                texts.append(re.sub(r"\{[^}]*\}", "", subtitle.dialogue.decode()))
    return texts


def test_the_source_has_what_the_tests_say(subbed: Subbed) -> None:
    info = probe(str(subbed.path))
    assert [(s.index, s.codec, s.language, s.forced) for s in info.subtitles] == [
        (3, "subrip", "eng", False),
        (4, "ass", "fre", True),
        (5, "subrip", "spa", False),
    ]
    assert info.subtitles[2].title == "Commentary"
    assert [(a.index, a.codec, a.language) for a in info.audio] == [
        (1, "aac", "eng"),
        (2, "ac3", "fre"),
    ]


async def test_a_chosen_subtitle_plays_as_the_default_soft_track(
    env: Env, start_app: StartApp, subbed: Subbed
) -> None:
    """A Streamyfin request with SubtitleStreamIndex and AudioStreamIndex: text tracks as
    mov_text (the chosen one first and default, the forced flag kept), the chosen audio
    first and default, and the video still copied."""
    env.jellyfin.items["subbed"] = subbed.path
    client = await start_app()
    body = {
        "url": env.url("subbed", SubtitleStreamIndex="3", AudioStreamIndex="2"),
        "deviceId": "phone-1",
        "itemId": "subbed",
        "item": {"Id": "subbed", "Name": "Subbed"},
    }
    resp = await client.post("/optimize-version", json=body, headers={"Authorization": ALICE})
    assert resp.status == 201, await resp.text()
    job = await wait_status(client, (await resp.json())["id"], "completed")
    assert job["backend"] == "copy", "adding tracks must not force a video encode"
    schema_validator("Job").validate(job)
    fates = {(t["type"], t["index"]): t for t in job["tracks"]}
    assert {k: v["action"] for k, v in fates.items()} == {
        ("audio", 2): "convert",
        ("audio", 1): "drop",
        ("subtitle", 3): "convert",
        ("subtitle", 4): "convert",
        ("subtitle", 5): "convert",
    }
    assert fates[("subtitle", 3)]["default"] and fates[("subtitle", 3)]["outputCodec"] == "mov_text"
    assert (
        fates[("subtitle", 4)]["forced"]
        and "ASS styling is lost" in fates[("subtitle", 4)]["reason"]
    )
    assert fates[("audio", 1)]["reason"] == "not chosen (audio: chosen)"
    out = job["outputPath"]
    with av.open(out) as box, av.open(str(subbed.path)) as src:
        assert box.streams.video[0].codec_context.name == "h264"
        audio = box.streams.audio
        assert [a.metadata.get("language") for a in audio] == ["fre"], "audio: chosen"
        assert audio[0].codec_context.name == "aac" and audio[0].codec_context.channels == 2
        assert audio[0].disposition & Disposition.default
        subs = box.streams.subtitles
        assert [s.codec_context.name for s in subs] == ["mov_text"] * 3
        assert [s.metadata.get("language") for s in subs] == ["eng", "fre", "spa"]
        assert [bool(s.disposition & Disposition.default) for s in subs] == [True, False, False]
        assert subs[2].metadata.get("handler_name") == "Commentary"
        assert box.duration is not None and src.duration is not None
        assert abs(box.duration - src.duration) <= 0.02 * src.duration
        indices = [s.index for s in subs]
    assert cues(out, indices[0]) == ["Hello there", "Bye"]
    assert cues(out, indices[1]) == ["Bonjour"]
    assert cues(out, indices[2]) == ["Hola"]
    assert probe(out).subtitles[1].forced, "the forced flag is kept"


def test_no_choice_means_no_default_subtitle_and_chosen_keeps_forced_ones(
    subbed: Subbed, tmp_path: Path
) -> None:
    """SubtitleStreamIndex=-1 (absent): every text track selectable, none default;
    ``subtitles: chosen`` keeps the chosen one and the forced ones only."""
    info = probe(str(subbed.path))
    profile = PROFILES["h264-1080p"]
    plan = make_plan(profile, info, SOFTWARE)
    assert [t.index for t in plan.tracks.subtitles] == [3, 4, 5]
    assert not any(t.default for t in plan.tracks.subtitles)
    only = replace(profile, subtitles="chosen")
    plan = make_plan(only, info, SOFTWARE, subtitle_index=5)
    assert [(t.index, t.default) for t in plan.tracks.subtitles] == [(5, True), (4, False)]
    dropped = {t.index: t.reason for t in plan.tracks.dropped}
    assert dropped == {2: "not chosen (audio: chosen)", 3: "not chosen (subtitles: chosen)"}
    assert "ASS styling is lost" in plan.tracks.subtitles[1].reason
    out = tmp_path / "out.mp4"
    argv = build_argv(
        default_ffmpeg(), plan, only, SOFTWARE, source_input(str(subbed.path)), str(out)
    )
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    result = probe(str(out))
    assert [(s.language, s.default, s.forced) for s in result.subtitles] == [
        ("spa", True, False),
        ("fre", False, True),
    ]


@pytest.mark.parametrize(
    ("mode", "chosen", "languages"),
    [("all", 2, ["fre", "eng"]), ("chosen+original", 2, ["fre", "eng"]),
     ("chosen+original", 1, ["eng"]), ("chosen", None, ["eng"])],
)  # fmt: skip
def test_audio_tracks_kept_chosen_first_and_default(
    subbed: Subbed, tmp_path: Path, mode: str, chosen: int | None, languages: list[str]
) -> None:
    profile = PROFILES["h264-1080p"]
    profile = replace(profile, audio=replace(profile.audio, tracks=mode))
    plan = make_plan(profile, probe(str(subbed.path)), SOFTWARE, chosen)
    assert plan.copy_video
    out = tmp_path / "out.mp4"
    argv = build_argv(
        default_ffmpeg(), plan, profile, SOFTWARE, source_input(str(subbed.path)), str(out)
    )
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    with av.open(str(out)) as box:
        audio = box.streams.audio
        assert [a.metadata.get("language") for a in audio] == languages
        assert [bool(a.disposition & Disposition.default) for a in audio] == [True] + [False] * (
            len(languages) - 1
        )
        assert {a.codec_context.name for a in audio} == {"aac"}
        # the AAC track is copied, the AC-3 one encoded
        kinds = {t.language: t.action for t in plan.tracks.audio}
        assert kinds.get("eng", "copy") == "copy" and kinds.get("fre", "convert") == "convert"


def test_surround_tracks_each_get_their_own_downmix() -> None:
    """Several encoded tracks: per-stream options (-filter:a:N), never one -af for all."""
    info = probe_two_surround()
    profile = PROFILES["h264-1080p"]
    profile = replace(profile, audio=AudioSpec("aac", 2, 192000, tracks="all"))
    plan = make_plan(profile, info, SOFTWARE)
    argv = build_argv("ffmpeg", plan, profile, SOFTWARE, ["-i", "in.mkv"], "out.mp4")
    assert "-af" not in argv
    assert argv[argv.index("-filter:a:0") + 1] == argv[argv.index("-filter:a:1") + 1]
    assert argv[argv.index("-c:a:1") + 1] == "aac" and argv[argv.index("-ac:a:1") + 1] == "2"


def probe_two_surround() -> MediaInfo:
    video = VideoInfo(0, "h264", 320, 240, "yuv420p", 8, 1_000_000)
    surround = [AudioInfo(i, "ac3", 6, 384_000, "eng", layout="5.1(side)") for i in (1, 2)]
    return MediaInfo("matroska", 3.0, 2_000_000, video, tuple(surround))


def test_an_older_database_gains_the_tracks_column(tmp_path: Path) -> None:
    """A jobs table from before issue 11 (no tracks column) opens, and its jobs show none."""
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace(",\n    tracks TEXT NOT NULL DEFAULT '[]'", ""))
        assert "tracks" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        db.execute(
            "INSERT INTO jobs (id, owner_id, owner_name, device_id, item_id, item, input_url,"
            " profile, status, created_at, output_path) VALUES"
            " ('j1', 'u', 'n', 'd', 'i', '{}', 'http://x', 'copy', 'completed', 1.0, '/o.mp4')"
        )
    db.close()
    store = JobStore(path, lambda: 2.0)
    try:
        job = store.get("j1")
        assert job is not None and job.tracks == [] and "tracks" not in job.to_api()
        job.tracks = [{"type": "audio", "index": 1, "codec": "aac", "action": "copy",
                       "reason": "r", "forced": False}]  # fmt: skip
        store.transition(job, JobStatus.READY_FOR_REMOVAL, tracks=job.tracks)
        again = store.get("j1")
        assert again is not None and again.tracks == job.tracks
    finally:
        store.close()


GERMAN = "1\n00:00:00,200 --> 00:00:01,500\nGuten Tag\n"


def _stream(index: int, codec: str, language: str, **flags: bool) -> dict[str, Any]:
    return {"Index": index, "Type": "Subtitle", "Codec": codec, "Language": language, **flags}


async def test_external_subtitles_are_fetched_with_the_token_in_a_header_and_muxed(
    env: Env, start_app: StartApp, subbed: Subbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sidecar files listed in the item's MediaStreams (IsExternal) come from Jellyfin's
    subtitle endpoint (token in the MediaBrowser header) into a temp file that ffmpeg reads:
    the chosen one is the default track; one Jellyfin cannot give and an image one are
    left out, with the reason."""
    ran: list[list[str]] = []
    real_run = ffmpeg.run

    async def recording(argv: list[str], *args: Any, **kwargs: Any) -> None:
        ran.append(list(argv))
        await real_run(argv, *args, **kwargs)

    monkeypatch.setattr(ffmpeg, "run", recording)
    env.jellyfin.items["subbed"] = subbed.path
    env.jellyfin.subtitles["subbed"] = {6: GERMAN}
    client = await start_app()
    streams = [
        {"Index": 0, "Type": "Video", "Codec": "h264"},
        _stream(3, "subrip", "eng", IsExternal=False),
        _stream(6, "srt", "ger", IsExternal=True),
        _stream(7, "ass", "ita", IsExternal=True),  # Jellyfin answers 404
        _stream(8, "pgssub", "jpn", IsExternal=True),
    ]
    body = {
        "url": env.url("subbed", SubtitleStreamIndex="6"),
        "deviceId": "phone-1",
        "itemId": "subbed",
        "item": {"Id": "subbed", "Name": "Subbed", "MediaStreams": streams},
    }
    resp = await client.post("/optimize-version", json=body, headers={"Authorization": ALICE})
    assert resp.status == 201, await resp.text()
    job = await wait_status(client, (await resp.json())["id"], "completed")
    assert job["backend"] == "copy"
    fates = {t["index"]: t for t in job["tracks"] if t["type"] == "subtitle"}
    assert fates[6]["action"] == "convert" and fates[6]["default"] and fates[6]["external"]
    assert fates[7]["action"] == "drop" and "HTTP 404" in fates[7]["reason"]
    assert fates[8]["action"] == "drop" and "image subtitle" in fates[8]["reason"]
    assert all("api_key" not in r and ALICE not in r for r in env.jellyfin.subtitle_requests)
    assert any("/Subtitles/6/Stream.srt" in r for r in env.jellyfin.subtitle_requests)
    assert ran and all(ALICE not in " ".join(argv) for argv in ran)
    out = job["outputPath"]
    with av.open(out) as box:
        subs = box.streams.subtitles
        assert [s.metadata.get("language") for s in subs] == ["ger", "eng", "fre", "spa"]
        assert [bool(s.disposition & Disposition.default) for s in subs] == [True] + [False] * 3
        german = subs[0].index
    assert cues(out, german) == ["Guten Tag"]
    assert sorted(p.name for p in Path(out).parent.iterdir()) == [Path(out).name], (
        "the sidecar files went with the job"
    )


async def test_a_stray_sidecar_folder_goes_at_start(env: Env, start_app: StartApp) -> None:
    """A server killed while a job had its sidecar files leaves their folder: it goes."""
    stray = env.config.cache_dir / "0b6e2f0c-old-job.mp4.subs"
    stray.mkdir(parents=True)
    (stray / "sidecar-6.srt").write_text(GERMAN)
    keep = env.config.cache_dir / "notes.subs.txt"
    keep.write_text("not ours")
    await start_app()
    assert not stray.exists() and keep.exists()


async def test_without_streams_in_the_request_jellyfin_is_asked_for_them(
    env: Env, start_app: StartApp, subbed: Subbed
) -> None:
    """The app sent no MediaStreams: the item is asked of Jellyfin as the user, and its
    sidecar file becomes the chosen default track."""
    env.jellyfin.items["subbed"] = subbed.path
    env.jellyfin.subtitles["subbed"] = {6: GERMAN}
    env.jellyfin.streams["subbed"] = [_stream(6, "subrip", "ger", IsExternal=True)]
    client = await start_app()
    body = {
        "url": env.url("subbed", SubtitleStreamIndex="6"),
        "deviceId": "phone-1",
        "itemId": "subbed",
        "item": {"Id": "subbed", "Name": "Subbed"},
    }
    resp = await client.post("/optimize-version", json=body, headers={"Authorization": ALICE})
    job = await wait_status(client, (await resp.json())["id"], "completed")
    with av.open(job["outputPath"]) as box:
        first = box.streams.subtitles[0]
        assert first.metadata.get("language") == "ger" and first.disposition & Disposition.default
        index = first.index
    assert cues(job["outputPath"], index) == ["Guten Tag"]
