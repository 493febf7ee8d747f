"""Profiles and backends as data: the user folder overrides, bad files stop the start."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from conftest import Env, StartApp, post_job, wait_status

from optimized_versions.app import create_app
from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.loader import shipped_dir
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.config import Config
from optimized_versions.errors import ConfigError

SMALL = """
name: phone-small
container: mp4
video: {codec: h264, max_width: 160, max_height: 160, max_bitrate: 500000, quality: 30,
        preset: veryfast}
audio: {codec: aac, channels: 1, bitrate: 64000}
"""


def test_shipped_files_are_found_and_valid() -> None:
    assert (shipped_dir("profiles") / "h264-1080p.yaml").is_file()
    assert "h264-1080p" in load_profiles()
    assert load_backends()["software"].encoders["h264"].codec == "libx264"


async def test_a_user_profile_is_used_when_a_request_names_it(
    env: Env, start_app: StartApp, tmp_path: Path
) -> None:
    user = tmp_path / "user"
    (user / "profiles").mkdir(parents=True)
    (user / "profiles" / "phone-small.yaml").write_text(SMALL)
    client = await start_app(profiles_dir=user)
    job_id = await post_job(client, env, "h264", profile="phone-small")
    job = await wait_status(client, job_id, "completed")
    assert job["profile"] == "phone-small", job
    with av.open(job["outputPath"]) as out:
        video = out.streams.video[0].codec_context
        assert (video.width, video.height) == (160, 120)
        assert out.streams.audio[0].codec_context.channels == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (SMALL.replace("codec: h264", "codec: vp9"), "video/codec"),
        (SMALL.replace("max_width: 160", "max_width: wide"), "video/max_width"),
        (SMALL.replace("container: mp4", "container: avi"), "container"),
        ("name: x\n", "(top level)"),
        ("name: [unclosed\n", "cannot read"),
    ],
)
def test_a_bad_profile_names_the_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "profiles").mkdir()
    bad = tmp_path / "profiles" / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    assert str(bad) in str(caught.value) and says in str(caught.value)


def test_an_unknown_default_profile_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default_profile = 'nope'"):
        create_app(Config(default_profile="nope", data_dir=tmp_path, cache_dir=tmp_path))
