"""HLS playlists and other formats that name URLs: whatever they name, the prober and ffmpeg
fetch only through the relay, under the same source rules as the job's first URL.

A real HLS rendition (generated segments, an AES-128 key, an fMP4 init section) is served by
a test HTTP server on an allowed host (127.0.0.1); a second server on 127.0.0.2 stands for
a host the rules refuse and counts every request it gets.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import ALICE, Env, StartApp, auth, post_job, wait_status
from hls_media import HEAD, IV, VARIANT, Rendition, jellyfin_hls, segments

from optimized_versions.config import StaticToken
from optimized_versions.media import probe

STANDALONE = (StaticToken(token=ALICE, name="alice", admin=True),)


@dataclass
class Host:
    """A plain HTTP server: the rendition's files, and playlists a test writes."""

    folder: Path
    texts: dict[str, str] = field(default_factory=dict)  # path -> a playlist's text
    hits: list[str] = field(default_factory=list)  # every path asked for
    base: str = ""

    async def answer(self, request: web.Request) -> web.Response:
        self.hits.append(request.path_qs)
        path = request.path.lstrip("/")
        if path in self.texts:
            return web.Response(text=self.texts[path], content_type="application/vnd.apple.mpegurl")
        file = self.folder / Path(path).name
        if not path or not file.is_file():
            return web.Response(status=404)
        return web.Response(body=file.read_bytes(), content_type="application/octet-stream")


async def serve(aiohttp_server: Any, folder: Path, host: str) -> Host:
    served = Host(folder)
    app = web.Application()
    app.router.add_get("/{tail:.*}", served.answer)
    server: TestServer = await aiohttp_server(app, host=host, access_log=None)
    served.base = str(server.make_url("")).rstrip("/")
    return served


async def run_job(client: Any, url: str, *wanted: str) -> dict[str, Any]:
    body = {"url": url, "deviceId": "d", "itemId": "hls"}
    resp = await client.post("/optimize-version", json=body, headers=auth())
    assert resp.status == 201, await resp.text()
    return await wait_status(client, (await resp.json())["id"], *wanted, token=ALICE)


def forbidden_playlists(evil: str) -> dict[str, dict[str, str]]:
    """Playlists on the allowed host, each naming the forbidden host in one place (or in
    one way that FFmpeg reads as a URI)."""
    key = f'#EXT-X-KEY:METHOD=AES-128,URI="{evil}/key.bin",IV={IV}\n'
    escaped = key.replace("/", "\\/")  # FFmpeg unescapes a quoted value
    media = f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",DEFAULT=YES,URI="{evil}/plain.m3u8"\n'
    encrypted = segments(["enc0.ts", "enc1.ts", "enc2.ts"])
    return {
        "segment": {"main.m3u8": HEAD + segments(["plain0.ts", f"{evil}/plain1.ts"])},
        "key": {"main.m3u8": HEAD + key + encrypted},
        "escaped key": {"main.m3u8": HEAD + escaped + encrypted},
        "init section": {
            "main.m3u8": HEAD
            + f'#EXT-X-MAP:URI="{evil}/init.mp4"\n'
            + segments(["frag0.m4s", "frag1.m4s", "frag2.m4s"])
        },
        "variant": {"main.m3u8": f"#EXTM3U\n{VARIANT}\n{evil}/plain.m3u8\n"},
        "rendition": {
            "main.m3u8": f'#EXTM3U\n{media}{VARIANT},AUDIO="a"\nplain.m3u8\n',
            "plain.m3u8": HEAD + segments(["plain0.ts", "plain1.ts", "plain2.ts"]),
        },
        "after a NUL": {"main.m3u8": HEAD + f"#EXTINF:1.0,\0{evil}/plain0.ts\n#EXT-X-ENDLIST\n"},
    }


PLACES = list(forbidden_playlists(""))


@pytest.mark.parametrize("place", PLACES)
async def test_a_playlist_cannot_send_the_readers_to_a_forbidden_host(
    start_app: StartApp, aiohttp_server: Any, rendition: Rendition, place: str
) -> None:
    """The prober and ffmpeg fetch a playlist's URIs themselves: each must pass the rules."""
    allowed = await serve(aiohttp_server, rendition.folder, "127.0.0.1")
    secret = await serve(aiohttp_server, rendition.folder, "127.0.0.2")
    secret.texts["plain.m3u8"] = (rendition.folder / "plain.m3u8").read_text()
    allowed.texts = forbidden_playlists(secret.base)[place]
    client = await start_app(jellyfin_url=None, tokens=STANDALONE, source_allow="127.0.0.1")
    job = await run_job(client, f"{allowed.base}/main.m3u8", "failed", "completed")
    assert secret.hits == [], f"the forbidden host was asked {len(secret.hits)} times"
    assert job["status"] == "failed"
    assert job["error"] == (
        "cannot read the source: its playlist names a URI the rules refuse: "
        "the source's host is not allowed (SOURCE_ALLOW)"
    )
    assert "127.0.0.2" not in job["error"]


def legit_playlists(base: str) -> dict[str, dict[str, str]]:
    """Relative, root-relative and absolute same-origin URIs, a nested variant playlist, an
    AES-128 key; or an fMP4 rendition with its init section."""
    key = f'#EXT-X-KEY:METHOD=AES-128,URI="/keys/key.bin",IV={IV}\n'
    return {
        "aes-128 ts": {
            "main.m3u8": f"#EXTM3U\n{VARIANT}\nvariant/index.m3u8\n",
            "variant/index.m3u8": HEAD
            + key
            + segments(["../enc0.ts", f"{base}/enc1.ts", "/enc2.ts?part=2"]),
        },
        "fmp4": {
            "main.m3u8": HEAD
            + '#EXT-X-MAP:URI="init.mp4"\n'
            + segments(["frag0.m4s", "frag1.m4s", "frag2.m4s"])
        },
    }


@pytest.mark.parametrize("kind", ["aes-128 ts", "fmp4"])
async def test_a_playlist_within_the_rules_transcodes_through_the_relay(
    start_app: StartApp, aiohttp_server: Any, rendition: Rendition, kind: str
) -> None:
    allowed = await serve(aiohttp_server, rendition.folder, "127.0.0.1")
    allowed.texts = legit_playlists(allowed.base)[kind]
    client = await start_app(jellyfin_url=None, tokens=STANDALONE, source_allow="127.0.0.1")
    job = await run_job(client, f"{allowed.base}/main.m3u8", "completed")
    info = probe.probe(job["outputPath"], frames=False)
    assert info.duration is not None and info.duration > 2.5, "all three segments"
    assert info.video is not None and info.audio
    asked = {hit.split("?")[0] for hit in allowed.hits}
    if kind == "fmp4":
        assert {"/init.mp4", "/frag0.m4s", "/frag1.m4s", "/frag2.m4s"} <= asked
    else:
        assert {"/variant/index.m3u8", "/keys/key.bin", "/enc0.ts", "/enc1.ts", "/enc2.ts"} <= asked


async def test_a_metadata_address_in_a_playlist_is_refused_before_any_request(
    start_app: StartApp, aiohttp_server: Any, rendition: Rendition
) -> None:
    """Standalone without SOURCE_ALLOW any host will do, but never link-local: the playlist
    is refused whole, so not even the allowed segment beside it is fetched."""
    allowed = await serve(aiohttp_server, rendition.folder, "127.0.0.1")
    metadata = "http://169.254.169.254/latest/meta-data/seg.ts"
    allowed.texts = {"main.m3u8": HEAD + segments(["plain0.ts", metadata])}
    client = await start_app(jellyfin_url=None, tokens=STANDALONE)
    job = await run_job(client, f"{allowed.base}/main.m3u8", "failed")
    assert job["error"] == (
        "cannot read the source: its playlist names a URI the rules refuse: "
        "the source's address is link-local or a metadata service"
    )
    assert {hit.split("?")[0] for hit in allowed.hits} == {"/main.m3u8"}


DASH = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT3S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" minBufferTime="PT1S">
 <Period><AdaptationSet mimeType="video/mp4">
  <Representation id="v" bandwidth="100000" width="160" height="120" codecs="avc1.64000b">
   <BaseURL>{url}</BaseURL>
  </Representation>
 </AdaptationSet></Period>
</MPD>
"""


async def test_ffmpeg_reads_the_source_as_the_prober_did(
    start_app: StartApp, aiohttp_server: Any, rendition: Rendition
) -> None:
    """A DASH manifest named .txt: the prober (no DASH demuxer) reads it as text art, the
    ffmpeg binary would read it as DASH and fetch its BaseURL itself; ffmpeg gets the
    prober's demuxer, so it never does."""
    allowed = await serve(aiohttp_server, rendition.folder, "127.0.0.1")
    secret = await serve(aiohttp_server, rendition.folder, "127.0.0.2")
    allowed.texts = {"film.txt": DASH.format(url=f"{secret.base}/film.mp4")}
    client = await start_app(jellyfin_url=None, tokens=STANDALONE, source_allow="127.0.0.1")
    await run_job(client, f"{allowed.base}/film.txt", "failed", "completed")
    assert secret.hits == [], f"the forbidden host was asked {len(secret.hits)} times"


def test_the_probe_reads_with_no_demuxer_that_fetches_what_it_names(
    rendition: Rendition, tmp_path: Path
) -> None:
    """An ffconcat list (as DASH or IMF would, in a PyAV built with them) names files to
    open: the probe refuses the format itself, whatever the list names."""
    shutil.copy(rendition.folder / "plain0.ts", tmp_path)
    listed = tmp_path / "list.ffconcat"
    listed.write_text("ffconcat version 1.0\nfile plain0.ts\n")
    with pytest.raises(probe.ProbeError):
        probe.probe(str(listed), frames=False)


async def test_with_jellyfin_a_playlist_names_jellyfin_alone(
    env: Env, start_app: StartApp, aiohttp_server: Any, rendition: Rendition, tmp_path: Path
) -> None:
    """With JELLYFIN_URL every URI of a playlist must be on Jellyfin's origin too."""
    secret = await serve(aiohttp_server, rendition.folder, "127.0.0.2")
    jellyfin_hls(env, rendition, tmp_path / "hls")
    env.jellyfin.items["hls-v"].write_text(HEAD + segments([f"{secret.base}/plain0.ts"]))
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hls"), "failed")
    assert job["error"] == (
        "cannot read the source: its playlist names a URI the rules refuse: "
        "the source is not on the Jellyfin server"
    )
    assert secret.hits == []
