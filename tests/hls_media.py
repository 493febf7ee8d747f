"""HLS media for the playlist tests: one generated rendition three ways, and an HLS item on
the fake Jellyfin (a pytest plugin of conftest's)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ALICE, Env

from optimized_versions.media.ffmpeg import default_ffmpeg

IV = "0x0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Rendition:
    folder: Path  # plain0-2.ts, enc0-2.ts (AES-128 with key.bin and IV), init.mp4, frag0-2.m4s


@pytest.fixture(scope="session")
def rendition(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    """Three one-second segments of a 3 s clip, three ways: plain MPEG-TS, AES-128 MPEG-TS,
    and fMP4 with an init section (ffmpeg's own HLS muxer)."""
    folder = tmp_path_factory.mktemp("hls")
    (folder / "key.bin").write_bytes(bytes(range(16)))
    (folder / "keyinfo").write_text(f"key.bin\n{folder / 'key.bin'}\n{IV[2:]}\n")
    clip = [
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=24:duration=3",
        "-f", "lavfi", "-i", "sine=duration=3",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-c:a", "aac",
        "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
    ]  # fmt: skip
    ways = {
        "plain": ["-hls_segment_filename", "plain%d.ts"],
        "enc": ["-hls_key_info_file", "keyinfo", "-hls_segment_filename", "enc%d.ts"],
        "frag": ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                 "-hls_segment_filename", "frag%d.m4s"],
    }  # fmt: skip
    for name, args in ways.items():
        subprocess.run(
            [default_ffmpeg(), "-v", "error", "-y", *clip, *args, f"{name}.m3u8"],
            cwd=folder, check=True, timeout=60,
        )  # fmt: skip
    return Rendition(folder)


def segments(names: list[str]) -> str:
    return "".join(f"#EXTINF:1.000000,\n{name}\n" for name in names) + "#EXT-X-ENDLIST\n"


HEAD = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
VARIANT = '#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=160x120,CODECS="avc1.64000b,mp4a.40.2"'


def jellyfin_hls(env: Env, rendition: Rendition, folder: Path) -> None:
    """Item "hls" on the fake Jellyfin: a master playlist whose variant ("hls-v") names
    three segments ("hls-0".."hls-2"), each a stream URL of its own with the token."""
    folder.mkdir(parents=True, exist_ok=True)
    token = f"api_key={ALICE}"
    master, variant = folder / "master.m3u8", folder / "variant.m3u8"
    master.write_text(f"#EXTM3U\n{VARIANT}\n../hls-v/index.m3u8?{token}\n")
    variant.write_text(HEAD + segments([f"../hls-{n}/seg{n}.ts?{token}" for n in range(3)]))
    env.jellyfin.items.update({"hls": master, "hls-v": variant})
    for n in range(3):
        env.jellyfin.items[f"hls-{n}"] = rendition.folder / f"plain{n}.ts"
