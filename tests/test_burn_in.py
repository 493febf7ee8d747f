"""Issue 11: image subtitles. The bundled ffmpeg cannot turn text into a bitmap subtitle
(dvdsub/dvbsub encoders take bitmaps only), so the test writes a tiny PGS (.sup) stream by
hand, as Blu-ray discs carry it: one white 64x32 box shown from 0.5 s to 2 s."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import av
import pytest

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.device import Device, Vendor
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.media.plan import Target, build_argv, make_plan, source_input
from optimized_versions.media.probe import probe

PROFILES = load_profiles()
BACKENDS = load_backends()
SOFTWARE = Target(BACKENDS["software"])
BOX = (32, 32, 64, 32)  # x, y, width, height of the subtitle's picture


def _segment(pts: int, kind: int, payload: bytes) -> bytes:
    return b"PG" + struct.pack(">IIBH", pts, 0, kind, len(payload)) + payload


def pgs(width: int, height: int, start: float, end: float) -> bytes:
    """A PGS stream: a display set that shows the box (epoch start), one that clears it."""
    x, y, w, h = BOX
    show, hide = round(start * 90_000), round(end * 90_000)
    window = struct.pack(">BBHHHH", 1, 0, x, y, w, h)
    composition = struct.pack(">HHBHBBBB", width, height, 0x10, 0, 0x80, 0, 0, 1)
    composition += struct.pack(">HBBHH", 0, 0, 0, x, y)
    palette = struct.pack(">BB", 0, 0) + bytes([1, 235, 128, 128, 255])  # entry 1: white
    line = bytes([0, 0xC0 | (w >> 8), w & 0xFF, 1, 0, 0])  # w pixels of colour 1, end of line
    data = line * h
    obj = struct.pack(">HBB", 0, 0, 0xC0) + (len(data) + 4).to_bytes(3, "big")
    obj += struct.pack(">HH", w, h) + data
    clear = struct.pack(">HHBHBBBB", width, height, 0x10, 1, 0x00, 0, 0, 0)
    return b"".join(
        [
            _segment(show, 0x16, composition),
            _segment(show, 0x17, window),
            _segment(show, 0x14, palette),
            _segment(show, 0x15, obj),
            _segment(show, 0x80, b""),
            _segment(hide, 0x16, clear),
            _segment(hide, 0x17, window),
            _segment(hide, 0x80, b""),
        ]
    )


@pytest.fixture(scope="module")
def pgs_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Black H.264 (fits every profile) with an English PGS track (stream 1) and a SubRip
    one (stream 2)."""
    folder = tmp_path_factory.mktemp("pgs")
    (folder / "box.sup").write_bytes(pgs(320, 240, 0.5, 2.0))
    (folder / "en.srt").write_text("1\n00:00:00,500 --> 00:00:01,000\nHi\n")
    path = folder / "pgs.mkv"
    subprocess.run(
        [default_ffmpeg(), "-v", "error", "-y",
         "-f", "lavfi", "-i", "color=black:size=320x240:rate=24:duration=3",
         "-i", str(folder / "box.sup"), "-i", str(folder / "en.srt"),
         "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:s", "copy", "-metadata:s:s:0", "language=eng", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def luma(path: Path, seconds: float, x: int, y: int) -> int:
    """The brightness of one pixel of the frame shown at ``seconds``."""
    with av.open(str(path)) as box:
        for frame in box.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                plane = frame.planes[0]
                return bytes(plane)[y * plane.line_size + x]
    raise AssertionError(f"no frame at {seconds} s")


def test_a_chosen_image_subtitle_is_burned_in(pgs_source: Path, tmp_path: Path) -> None:
    info = probe(str(pgs_source))
    assert [(s.index, s.codec) for s in info.subtitles] == [
        (1, "hdmv_pgs_subtitle"),
        (2, "subrip"),
    ]
    profile = PROFILES["h264-1080p"]
    plan = make_plan(profile, info, SOFTWARE, subtitle_index=1)
    assert not plan.copy_video, "burning in forces a video encode"
    assert plan.tracks.burn is not None and plan.tracks.burn.index == 1
    assert [t.index for t in plan.tracks.subtitles] == [2], "text stays soft, never burned"
    out = tmp_path / "out.mp4"
    argv = build_argv(
        default_ffmpeg(), plan, profile, SOFTWARE, source_input(str(pgs_source)), str(out)
    )
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.startswith("[0:0][0:1]overlay=") and graph.endswith("[video]")
    assert argv[argv.index("-map") + 1] == "[video]" and "-vf" not in argv
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    x, y, w, h = BOX
    assert luma(out, 1.25, x + w // 2, y + h // 2) > 200, "the subtitle is in the picture"
    assert luma(out, 1.25, 250, 200) < 40, "and only where it was drawn"
    assert luma(out, 2.5, x + w // 2, y + h // 2) < 40, "and gone after its end"
    assert [s.codec for s in probe(str(out)).subtitles] == ["mov_text"], "the SubRip one"


def test_an_image_subtitle_not_chosen_is_dropped_and_the_video_copied(
    pgs_source: Path,
) -> None:
    profile = PROFILES["h264-1080p"]
    for chosen in (None, 2):
        plan = make_plan(profile, probe(str(pgs_source)), SOFTWARE, subtitle_index=chosen)
        assert plan.copy_video and plan.tracks.burn is None
        (dropped,) = plan.tracks.dropped
        assert dropped.index == 1 and dropped.action == "drop"
        assert "MP4 cannot hold it" in dropped.reason
    only_chosen = replace(profile, subtitles="chosen")
    plan = make_plan(only_chosen, probe(str(pgs_source)), SOFTWARE)
    argv = build_argv("ffmpeg", plan, only_chosen, SOFTWARE, ["-i", "in.mkv"], "out.mp4")
    assert "-sn" in argv and "-c:s" not in argv


def test_burn_in_on_a_gpu_backend_draws_on_the_cpu_before_the_upload(pgs_source: Path) -> None:
    """No backend describes an overlay filter yet: the subtitle is drawn on the decoded
    picture in system memory, then the backend's software-decode chain runs as it would."""
    nvidia = Device(id="nvidia:0", vendor=Vendor.NVIDIA, name="RTX", index=0)
    target = Target(BACKENDS["nvenc"], nvidia, hw_decode=True)
    profile = PROFILES["h264-1080p"]
    plan = make_plan(profile, probe(str(pgs_source)), target, subtitle_index=1)
    assert not plan.copy_video and not plan.hw_decode and plan.encoder == "h264_nvenc"
    argv = build_argv("ffmpeg", plan, profile, target, ["-i", "in.mkv"], "out.mp4")
    graph = argv[argv.index("-filter_complex") + 1]
    first, _, rest = graph.partition(",")
    assert first == "[0:0][0:1]overlay=eof_action=pass:repeatlast=0"
    soft = make_plan(profile, probe(str(pgs_source)), replace(target, hw_decode=False))
    soft = replace(soft, copy_video=False, backend="nvenc", encoder="h264_nvenc", codec="h264")
    plain = build_argv("ffmpeg", soft, profile, target, ["-i", "in.mkv"], "out.mp4")
    assert rest == plain[plain.index("-vf") + 1] + "[video]"
    assert "-hwaccel" not in argv
