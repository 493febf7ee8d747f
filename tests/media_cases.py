"""Generated sources for the media-correctness cases (issue 12), and ways to look at outputs.

A separate session fixture (``cases``) so that other tests do not pay for making them.
Everything is made with the bundled ffmpeg: interlaced TFF and BFF, an anamorphic DVD,
a rotated phone video, an odd size, Hi10P H.264, variable frame rate, 5.1 with dialogue
in the centre and a loud scene, chapters and tags, Dolby Vision's sample entry.
"""

from __future__ import annotations

import math
import subprocess
from array import array
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from optimized_versions.media.ffmpeg import default_ffmpeg

SURROUND_SECONDS = 6.0  # a loud scene for 3 s, then dialogue alone
LOUD = "0.708*sin(2*PI*110*t)*min(1,t/0.3)*lt(t,3)"  # fronts and surrounds at -3 dBFS
DIALOGUE = "0.25*sin(2*PI*1000*t)*min(1,t/0.3)"  # the centre at -12 dBFS
CHAPTERS = """;FFMETADATA1
title=Release group title
comment=ripped by someone

[CHAPTER]
TIMEBASE=1/1000
START=0
END=1500
title=Opening

[CHAPTER]
TIMEBASE=1/1000
START=1500
END=3000
title=Ending
"""


def ffmpeg(*args: str) -> str:
    """Run the bundled ffmpeg; its stderr (for filters that report there, like idet)."""
    done = subprocess.run(
        [default_ffmpeg(), "-hide_banner", "-nostats", "-y", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stderr


@dataclass(frozen=True)
class Cases:
    tff: Path  # H.264 576i, top field first, AAC stereo
    dvd: Path  # MPEG-2 480i bottom field first, anamorphic 720x480 SAR 32:27, ~5 Mb/s
    phone: Path  # HEVC stored 320x180 with a 90-degree display rotation; white at the top
    odd: Path  # H.264 4:4:4 853x481
    hi10p: Path  # H.264 High 10
    vfr: Path  # HEVC, 2 s at 24 fps then 2 s at 60 fps: 168 frames
    surround: Path  # H.264 + FLAC 5.1: a loud scene, then dialogue alone in the centre
    chapters: Path  # two chapters, tagged streams, two audio tracks (the second default)
    dolby: Path  # HEVC in MP4 with a Dolby Vision sample entry (dvh1), no HDR10 signalling
    combed: Path  # MPEG-4 in AVI: interlaced pictures, field order not signalled at all


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    d = tmp_path_factory.mktemp("cases")
    pal = ["-f", "lavfi", "-i", "testsrc2=size=720x576:rate=50:duration=2"]
    ffmpeg(*pal, "-f", "lavfi", "-i", "sine=duration=2", "-vf",
           "tinterlace=mode=interleave_top,setfield=tff", "-c:v", "libx264", "-preset",
           "ultrafast", "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(d / "tff.mkv"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x480:rate=60000/1001:duration=2",
           "-vf", "tinterlace=mode=interleave_bottom,setfield=bff,setsar=32/27",
           "-c:v", "mpeg2video", "-b:v", "5M", "-maxrate", "5M", "-bufsize", "1835k",
           "-flags", "+ildct+ilme", str(d / "dvd.ts"))  # fmt: skip
    stored = d / "stored.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=black:size=180x320:rate=30:duration=1", "-vf",
           "drawbox=x=0:y=0:w=180:h=80:color=white:t=fill,transpose=clock",
           "-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p",
           str(stored))  # fmt: skip
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(d / "phone.mp4"))
    # 4:2:0 cannot be odd-sized; a 4:4:4 screen recording of a window can
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=853x481:rate=25:duration=1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv444p", str(d / "odd.mkv"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", str(d / "hi10p.mkv"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=2",
           "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=60:duration=2",
           "-filter_complex", "[0][1]concat=n=2:v=1:a=0", "-fps_mode", "vfr", "-c:v", "libx265",
           "-x265-params", "log-level=error", str(d / "vfr.mkv"))  # fmt: skip
    channels = "|".join([LOUD, LOUD, DIALOGUE, LOUD, LOUD, LOUD])
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={SURROUND_SECONDS}",
           "-f", "lavfi", "-i", f"aevalsrc='{channels}':c=5.1:s=48000:d={SURROUND_SECONDS}",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac",
           str(d / "surround.mkv"))  # fmt: skip
    meta = d / "chapters.txt"
    meta.write_text(CHAPTERS)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
           "-f", "lavfi", "-i", "sine=frequency=880:duration=3", "-i", str(meta),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map_metadata", "3", "-map_chapters", "3",
           "-c:v", "libx265", "-x265-params", "log-level=error", "-c:a", "ac3",
           "-metadata:s:v:0", "language=eng", "-metadata:s:v:0", "title=Main feature",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=Commentary",
           "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Français 5.1",
           "-disposition:a:0", "0", "-disposition:a:1", "default",
           str(d / "chapters.mkv"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1", "-c:v", "libx265",
           "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le", "-tag:v", "dvh1",
           str(d / "dolby.mp4"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x576:rate=50:duration=2", "-vf",
           "tinterlace=mode=interleave_top,setfield=prog", "-c:v", "mpeg4", "-q:v", "3",
           str(d / "combed.avi"))  # fmt: skip
    return Cases(
        combed=d / "combed.avi",
        tff=d / "tff.mkv",
        dvd=d / "dvd.ts",
        phone=d / "phone.mp4",
        odd=d / "odd.mkv",
        hi10p=d / "hi10p.mkv",
        vfr=d / "vfr.mkv",
        surround=d / "surround.mkv",
        chapters=d / "chapters.mkv",
        dolby=d / "dolby.mp4",
    )


def idet(path: Path) -> dict[str, int]:
    """idet's multi-frame counts over a whole video: tff, bff, progressive, undetermined."""
    text = ffmpeg("-i", str(path), "-an", "-vf", "idet", "-f", "null", "-")
    # the last report: the first comes from a filter instance that saw no frames
    line = [x for x in text.splitlines() if "Multi frame detection" in x][-1]
    parts = line.split("Multi frame detection:")[1].replace(":", " ").split()
    return {parts[i].lower(): int(parts[i + 1]) for i in range(0, len(parts), 2)}


def samples(path: Path) -> tuple[int, list[list[float]]]:
    """The first audio stream, decoded: its rate and one list of float samples per channel."""
    resampler = av.AudioResampler(format="fltp")
    with av.open(str(path)) as box:
        stream = box.streams.audio[0]
        channels: list[list[float]] = [[] for _ in range(stream.codec_context.channels)]
        for frame in box.decode(stream):
            for out in resampler.resample(frame):
                for index, plane in enumerate(out.planes):
                    channels[index] += array("f", bytes(plane)[: out.samples * 4])
        return stream.codec_context.sample_rate, channels


def peak_db(path: Path) -> float:
    _, channels = samples(path)
    return 20 * math.log10(max(abs(x) for channel in channels for x in channel))


def rms_db(path: Path, start: float, end: float) -> float:
    rate, channels = samples(path)
    window = channels[0][int(start * rate) : int(end * rate)]
    return 10 * math.log10(sum(x * x for x in window) / len(window))


def gray_frame(path: Path) -> tuple[int, int, bytes]:
    """The first picture as a player shows it (rotation applied), in 8-bit gray."""
    raw = Path(str(path) + ".gray")
    ffmpeg("-i", str(path), "-frames:v", "1", "-pix_fmt", "gray", "-f", "rawvideo", str(raw))
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        turned = next(box.decode(stream)).rotation in (90, -90, 270)
    return (height, width, raw.read_bytes()) if turned else (width, height, raw.read_bytes())
