"""Shared fixtures: generated media, a stand-in Jellyfin, and the real app around them."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from optimized_versions.app import create_app
from optimized_versions.config import Config
from optimized_versions.hardware.devices import Host
from optimized_versions.hardware.load import HostReading
from optimized_versions.hardware.nvml import GpuReading, NvmlUnavailable
from optimized_versions.media import ffmpeg
from optimized_versions.media.ffmpeg import default_ffmpeg
from optimized_versions.web.http.serving import server_options

# the fake GPU host, HLS renditions, issue 12's sources, a throwaway PostgreSQL (cluster,
# queue_url)
pytest_plugins = ["gpu_host", "hls_media", "media_cases", "postgres"]

ALICE, BOB, ADMIN = "alice-token-0123456789", "bob-token-0123456789", "admin-token-0123456789"
PASSWORDS = {ALICE: "alice-password", BOB: "bob-password", ADMIN: "root-password"}
USERS: dict[str, dict[str, Any]] = {
    ALICE: {"Id": "u-alice", "Name": "alice", "Policy": {"IsAdministrator": False}},
    BOB: {"Id": "u-bob", "Name": "bob", "Policy": {"IsAdministrator": False}},
    ADMIN: {"Id": "u-admin", "Name": "root", "Policy": {"IsAdministrator": True}},
}
PREFIX = "/jf"  # Jellyfin behind a base URL, as many installs are
PUBLIC = "http://jellyfin.phone-side.invalid:8096"  # what the phone knows: unreachable here


def _ffmpeg(*args: str) -> None:
    subprocess.run([default_ffmpeg(), "-v", "error", "-y", *args], check=True, timeout=60)


@dataclass(frozen=True)
class Media:
    hevc: Path  # HEVC 10-bit + AAC 5.1 in MKV: must be transcoded
    h264: Path  # H.264 + AAC stereo in MP4: may be copied
    two_audio: Path  # H.264 + two audio tracks (stereo, then 5.1 AC-3)
    corrupt: Path
    long: Path  # 20 s, for jobs that must still be running when a test acts
    hdr: Path  # HEVC 10-bit tagged PQ (HDR10)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    folder = tmp_path_factory.mktemp("media")
    video = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=3"]
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=3"]
    surround = "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0"
    hevc = folder / "hevc.mkv"
    _ffmpeg(
        *video,
        *sine,
        "-af",
        surround,
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv420p10le",
        "-c:a",
        "aac",
        str(hevc),
    )
    h264 = folder / "h264.mp4"
    _ffmpeg(
        *video,
        *sine,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
        str(h264),
    )
    two = folder / "two-audio.mkv"
    _ffmpeg(
        *video,
        *sine,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:duration=3",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-c:a:0",
        "aac",
        "-ac:a:0",
        "2",
        "-c:a:1",
        "ac3",
        "-ac:a:1",
        "6",
        str(two),
    )
    corrupt = folder / "corrupt.mkv"
    corrupt.write_bytes(b"\x1a\x45\xdf\xa3 this is not a film " * 500)
    long = folder / "long.mkv"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=24:duration=20",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=20",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        str(long),
    )
    hdr = folder / "hdr.mkv"
    _ffmpeg(
        *video,
        "-vf",
        "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv420p10le",
        str(hdr),
    )
    return Media(hevc=hevc, h264=h264, two_audio=two, corrupt=corrupt, long=long, hdr=hdr)


@dataclass
class FakeJellyfin:
    """Stands in for Jellyfin: /Users/Me and video streams with Range support."""

    items: dict[str, Path]
    mode: str = "ok"  # "ok", "error" to answer 500 everywhere, "slow" for a hung /Users/Me
    me_calls: int = 0
    revoked: set[str] = field(default_factory=set)  # tokens /Users/Me refuses from now on
    trickle: set[str] = field(default_factory=set)  # items sent slowly, 32 KiB per 50 ms
    hang: set[str] = field(default_factory=set)  # items that stop after their first 256 KiB
    cut: set[str] = field(default_factory=set)  # items whose connection drops half-way
    drop_once: set[str] = field(default_factory=set)  # dropped half-way once, then fine
    redirect: dict[str, str] = field(default_factory=dict)  # item -> where it redirects
    raw_paths: list[str] = field(default_factory=list)  # the paths as sent, still quoted
    stream_tokens: list[str] = field(default_factory=list)
    stream_requests: list[str] = field(default_factory=list)  # path?query of each stream
    paths: dict[str, str] = field(default_factory=dict)  # item -> its file's path on "Jellyfin"
    # item -> Jellyfin stream index -> a sidecar subtitle file's text (served as SubRip)
    subtitles: dict[str, dict[int, str]] = field(default_factory=dict)
    subtitle_requests: list[str] = field(default_factory=list)  # path?query of each
    streams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # item -> MediaStreams
    hidden: set[str] = field(default_factory=set)  # items no user may see (404 to /Items)
    item_requests: list[str] = field(default_factory=list)  # path of each /Users/{u}/Items/{i}

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", PREFIX):
            app.router.add_get(prefix + "/Users/Me", self.users_me)
            app.router.add_post(prefix + "/Users/AuthenticateByName", self.by_name)
            app.router.add_get(prefix + "/Videos/{item}/{name}", self.stream)
            app.router.add_get(prefix + "/Users/{user}/Items/{item}", self.item)
            app.router.add_get(
                prefix + "/Videos/{item}/{source}/Subtitles/{index}/{name}", self.subtitle
            )
        return app

    async def users_me(self, request: web.Request) -> web.Response:
        self.me_calls += 1
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "error":
            return web.Response(status=500)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix('MediaBrowser Token="').removesuffix('"')
        revoked = token not in USERS or token in self.revoked
        if not auth.startswith("MediaBrowser Token=") or revoked:
            return web.Response(status=401)
        return web.json_response(USERS[token])

    async def by_name(self, request: web.Request) -> web.Response:
        """Jellyfin's sign-in: a client header and the user's name and password."""
        if 'Client="' not in request.headers.get("Authorization", ""):
            return web.Response(status=400)
        body = await request.json()
        for token, user in USERS.items():
            if user["Name"] == body.get("Username") and PASSWORDS[token] == body.get("Pw"):
                return web.json_response({"AccessToken": token, "User": user})
        return web.Response(status=401)

    async def item(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix('MediaBrowser Token="').removesuffix('"')
        if token not in USERS or USERS[token]["Id"] != request.match_info["user"]:
            return web.Response(status=401)
        item = request.match_info["item"]
        self.item_requests.append(request.path)
        if item in self.hidden:
            return web.Response(status=404)
        if item in self.streams:
            return web.json_response({"Id": item, "MediaStreams": self.streams[item]})
        if item not in self.paths:  # an item as Jellyfin lists it, or none
            return (
                web.json_response({"Id": item}) if item in self.items else web.Response(status=404)
            )
        sources = [
            {"Id": "other", "Path": "/media/elsewhere.mkv"},
            {"Id": f"ms-{item}", "Path": self.paths[item]},
        ]
        return web.json_response({"Id": item, "MediaSources": sources})

    async def subtitle(self, request: web.Request) -> web.Response:
        """Jellyfin's subtitle endpoint: the token in the MediaBrowser header."""
        self.subtitle_requests.append(request.path_qs)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix('MediaBrowser Token="').removesuffix('"')
        if token not in USERS:
            return web.Response(status=401)
        item, index = request.match_info["item"], request.match_info["index"]
        text = self.subtitles.get(item, {}).get(int(index)) if index.isdigit() else None
        if text is None or request.match_info["name"] != "Stream.srt":
            return web.Response(status=404)
        return web.Response(text=text, content_type="application/x-subrip")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "error":
            return web.Response(status=500)
        token = request.query.get("api_key") or request.query.get("ApiKey", "")
        if token not in USERS:
            return web.Response(status=401)
        self.stream_tokens.append(token)
        self.stream_requests.append(request.path_qs)
        self.raw_paths.append(request.raw_path)
        item = request.match_info["item"]
        if item in self.redirect:
            raise web.HTTPFound(self.redirect[item])
        if item not in self.items:
            return web.Response(status=404, text="item not found")
        path = self.items[item]
        cut = item in self.cut or item in self.drop_once
        self.drop_once.discard(item)
        if item in self.trickle or item in self.hang or cut:
            return await self._slow(request, path, hang=item in self.hang, cut=cut)
        return self._whole(request, path)

    @staticmethod
    def _whole(request: web.Request, path: Path) -> web.Response:
        """The file (or its Range) from memory: no file handle left open when a reader
        hangs up half-way, as ffmpeg does once it has what it needs."""
        data = path.read_bytes()
        rng = request.http_range
        start, stop = rng.start or 0, min(rng.stop or len(data), len(data))
        headers = {"Accept-Ranges": "bytes", "Content-Type": "video/x-matroska"}
        if rng.start is None and rng.stop is None:
            return web.Response(body=data, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
        return web.Response(status=206, body=data[start:stop], headers=headers)

    async def _slow(
        self, request: web.Request, path: Path, hang: bool, cut: bool
    ) -> web.StreamResponse:
        data = path.read_bytes()
        start = request.http_range.start or 0
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = len(data) - start
        response.content_type = "video/x-matroska"
        response.headers["Accept-Ranges"] = "bytes"
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        sent = start
        while sent < len(data):
            if hang and sent >= 256 * 1024:
                await asyncio.sleep(3600)
            if cut and sent >= len(data) // 2:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(data[sent : sent + 32 * 1024])
            sent += 32 * 1024
            if sent > start + 256 * 1024:
                await asyncio.sleep(0.05)
        return response


@dataclass
class FakeHostLoad:
    """psutil's readings, set by tests: idle unless a test says otherwise."""

    cpu: float = 5.0
    memory: float = 80.0
    disk: int = 10**12

    def read(self, cache_dir: Path) -> HostReading:
        return HostReading(self.cpu, self.memory, self.disk)


@dataclass
class FakeGpuLoad:
    """NVML's encoder readings per GPU index, set by tests."""

    gpus: dict[int, GpuReading] = field(default_factory=dict)

    def read(self, index: int) -> GpuReading:
        if index not in self.gpus:
            raise NvmlUnavailable("no such GPU")
        return self.gpus[index]

    def close(self) -> None:
        """The readings outlive a server: tests restart servers on the same GPU."""


@dataclass
class Env:
    jellyfin: FakeJellyfin
    jellyfin_url: str
    config: Config
    now: float | None = None  # set it to freeze the server's clock at that time
    load: FakeHostLoad = field(default_factory=FakeHostLoad)
    gpu_load: FakeGpuLoad = field(default_factory=FakeGpuLoad)

    def clock(self) -> float:
        return time.time() if self.now is None else self.now

    def url(self, item: str, token: str = ALICE, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"static": "true", **query}.items())
        return f"{PUBLIC}/Videos/{item}/stream?{params}&api_key={token}"


@pytest.fixture(scope="session")
def hardware_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One probe of this machine for the whole session (the cache key stays the same)."""
    return tmp_path_factory.mktemp("probe") / "hardware.json"


@pytest.fixture
async def env(media: Media, tmp_path: Path, aiohttp_server: Any, hardware_cache: Path) -> Env:
    jellyfin = FakeJellyfin(
        items={
            "hevc": media.hevc,
            "h264": media.h264,
            "two-audio": media.two_audio,
            "corrupt": media.corrupt,
            "long": media.long,
            "hdr": media.hdr,
        }
    )
    # the stand-in logs nothing: any token in a test's log records is the server's fault
    server: TestServer = await aiohttp_server(jellyfin.app(), access_log=None)
    jellyfin_url = str(server.make_url(PREFIX))
    config = Config(
        jellyfin_url=jellyfin_url,
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        stop_grace=2.0,
        stall_timeout=20.0,
        removal_grace=60.0,
        cleanup_interval=3600.0,
        hardware_cache=hardware_cache,
        cpu_slots=8,  # concurrency in these tests is MAX_CONCURRENT_JOBS's
        load_interval=3600.0,  # tests sample the load themselves
    )
    return Env(jellyfin=jellyfin, jellyfin_url=jellyfin_url, config=config)


StartApp = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def start_app(env: Env, aiohttp_client: Any) -> AsyncIterator[StartApp]:
    """Start the real app on the test's data folder; call again to simulate a restart."""

    async def start(
        host: Host | None = None, port: int | None = None, **overrides: Any
    ) -> TestClient[web.Request, web.Application]:
        config = replace(env.config, **overrides)
        app = create_app(config, clock=env.clock, host=host, readers=(env.load, env.gpu_load))
        server = TestServer(app, port=port)  # a port: a restart where workers find it
        # as `serve` runs it (TestServer drops runner options given to its constructor)
        await server.start_server(**server_options(config))
        client: TestClient[web.Request, web.Application] = await aiohttp_client(server)
        return client

    yield start


def auth(token: str = ALICE) -> dict[str, str]:
    return {"Authorization": token}


async def post_job(
    client: TestClient[web.Request, web.Application],
    env: Env,
    item: str,
    token: str = ALICE,
    device: str = "phone-1",
    name: str | None = None,  # the item's Name (the output's title: part of its key)
    **extra: Any,
) -> str:
    body = {
        "url": env.url(item, token),
        "deviceId": device,
        "itemId": item,
        "fileExtension": "ts",
        "item": {"Id": item, "Name": name or f"Film {item}"},
        **extra,
    }
    resp = await client.post("/optimize-version", json=body, headers=auth(token))
    assert resp.status == 201, await resp.text()
    job_id: str = (await resp.json())["id"]
    return job_id


TERMINAL = frozenset({"completed", "failed", "cancelled", "ready-for-removal"})


async def wait_status(
    client: TestClient[web.Request, web.Application],
    job_id: str,
    *wanted: str,
    token: str = ADMIN,
    timeout: float = 60.0,
    min_progress: float = -1.0,
) -> dict[str, Any]:
    """Poll job-status as the phone does (but every 50 ms) until the job is in ``wanted``;
    the wait is the assertion: it fails at once, with the job's last state, when the job
    ends any other way (and after ``timeout`` when it never gets there)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await client.get(f"/job-status/{job_id}", headers=auth(token))
        job = await resp.json()
        status = job.get("status")
        if status in wanted and job.get("progress", 0) > min_progress:
            return job
        if (status in TERMINAL and status not in wanted) or resp.status != 200:
            raise AssertionError(f"job {job_id} ended {status}, not {wanted}: {job}")
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {wanted} in {timeout:g} s: {job}")


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every ffmpeg run that writes a job's output (not the probe's tests)."""
    seen: list[list[str]] = []
    real = ffmpeg.run

    async def counting(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        if argv and argv[-1].endswith(".mp4.part"):
            seen.append(argv)
        return await real(argv, *args, **kwargs)

    monkeypatch.setattr(ffmpeg, "run", counting)
    return seen
