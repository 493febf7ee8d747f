"""Where a job reads its source: the original through Jellyfin, a mounted folder, or as given."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ALICE, PUBLIC, Env, StartApp, auth, wait_status

from optimized_versions.jellyfin.sources import (
    is_transcode,
    map_path,
    original_stream,
    parse_path_map,
)


@pytest.mark.parametrize(
    ("url", "transcode"),
    [
        ("http://jf/Videos/1/stream?static=true&api_key=k", False),
        ("http://jf/Videos/1/stream.mp4?Static=True", False),
        ("http://jf/Videos/1/stream?static=false&container=ts", True),
        ("http://jf/Videos/1/stream?container=ts", True),
        ("http://jf/videos/1/master.m3u8?static=true", True),
        ("http://jf/videos/1/main.m3u8", True),
    ],
)
def test_is_transcode(url: str, transcode: bool) -> None:
    assert is_transcode(url) is transcode


def test_original_stream_keeps_the_client_choices() -> None:
    url = (
        "https://public/jf/videos/abc/master.m3u8?MediaSourceId=ms1&AudioStreamIndex=3"
        "&VideoBitrate=1000&api_key=T"
    )
    assert original_stream(url, "http://jellyfin:8096/jf", "ignored", "T") == (
        "http://jellyfin:8096/jf/Videos/abc/stream?static=true&MediaSourceId=ms1"
        "&AudioStreamIndex=3&api_key=T"
    )
    assert "/Videos/item9/" in original_stream("http://x/weird", "http://j", "item9", "T")


def test_path_map_stays_inside_the_mounted_folder(tmp_path: Path) -> None:
    (tmp_path / "mnt" / "films").mkdir(parents=True)
    film = tmp_path / "mnt" / "films" / "a.mkv"
    film.write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"x")
    mappings = parse_path_map(f"/media={tmp_path}/mnt;/other=/nowhere")
    assert map_path("/media/films/a.mkv", mappings) == film
    assert map_path("/media/../secret", mappings) is None
    assert map_path("/media/films/missing.mkv", mappings) is None
    assert map_path("/mediax/films/a.mkv", mappings) is None


async def _post(client: Any, url: str, item: str) -> str:
    resp = await client.post(
        "/optimize-version",
        headers=auth(),
        json={"url": url, "deviceId": "d", "itemId": item},
    )
    assert resp.status == 201
    job_id: str = (await resp.json())["id"]
    return job_id


async def test_a_transcode_url_fetches_the_original(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    url = (
        f"{PUBLIC}/Videos/two-audio/stream?static=false&container=ts&MediaSourceId=ms-1"
        f"&AudioStreamIndex=2&VideoBitrate=200000&api_key={ALICE}"
    )
    job = await wait_status(client, await _post(client, url, "two-audio"), "completed")
    fetched = env.jellyfin.stream_requests[-1]
    assert fetched.startswith("/jf/Videos/two-audio/stream?static=true&MediaSourceId=ms-1")
    assert "AudioStreamIndex=2" in fetched and "VideoBitrate" not in fetched
    assert "static=false" in job["inputUrl"] and ALICE not in job["inputUrl"]


async def test_the_client_url_as_given_when_asked(env: Env, start_app: StartApp) -> None:
    client = await start_app(fetch_original=False)
    url = f"{PUBLIC}/Videos/h264/stream?static=false&container=ts&api_key={ALICE}"
    await wait_status(client, await _post(client, url, "h264"), "completed")
    assert "static=false&container=ts" in env.jellyfin.stream_requests[-1]


async def test_a_mounted_media_folder_is_read_directly(
    env: Env, start_app: StartApp, tmp_path: Path
) -> None:
    local = tmp_path / "mnt" / "films"
    local.mkdir(parents=True)
    shutil.copy(env.jellyfin.items["hevc"], local / "Film (2020).mkv")
    env.jellyfin.paths["hevc"] = "/media/films/Film (2020).mkv"
    client = await start_app(path_map=f"/media={tmp_path}/mnt")
    url = f"{PUBLIC}/Videos/hevc/stream?static=false&MediaSourceId=ms-hevc&api_key={ALICE}"
    await wait_status(client, await _post(client, url, "hevc"), "completed")
    assert env.jellyfin.stream_requests == [], "the file was read from the mounted folder"
