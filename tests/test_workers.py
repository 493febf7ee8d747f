"""Worker hosts for real: the server on a throwaway PostgreSQL (SAQ's queues), worker hosts
as separate processes (the installed console script) with their own cache folders, real
ffmpeg on the generated clips, and the phone's API on the server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import av
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status
from gpu_host import FakeHost
from hls_media import Rendition, jellyfin_hls
from saq import Status
from saq.queue.http import HttpQueue
from served import COMMAND, free_port
from test_core import CPU_ONLY
from test_lifecycle import _fail_once
from test_tracks import GERMAN, _stream, cues

from optimized_versions.app import build_hardware
from optimized_versions.jobs.models import JobStatus
from optimized_versions.keys import DISPATCHER, STORE, UPLOADS, WORKER_TOKENS
from optimized_versions.media import probe
from optimized_versions.nodes.worker import WorkerHost

pytestmark = pytest.mark.timeout(240)
Client = TestClient[web.Request, web.Application]


class Workers:
    def __init__(self, client: Client, folder: Path, hardware_cache: Path) -> None:
        self.client, self.folder, self.hardware_cache = client, folder, hardware_cache
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.logs: list[IO[bytes]] = []

    async def start(
        self, name: str, token: str | None = None, **more: str
    ) -> asyncio.subprocess.Process:
        if token is None:
            token = self.client.app[WORKER_TOKENS].create(name)
        home = self.folder / name
        env = {
            **os.environ,
            "WORKER_TOKEN": token,
            "DATA_DIR": str(home / "data"),
            "CACHE_DIR": str(home / "cache"),
            "HARDWARE_CACHE": str(self.hardware_cache),
            "WORKER_HEARTBEAT": "2",
            "CPU_SLOTS": "1",
            "MIN_FREE_SPACE": str(64 * 1024 * 1024),
            **more,
        }
        home.mkdir(parents=True, exist_ok=True)
        log = (home / "worker.log").open("wb")
        self.logs.append(log)
        proc = await asyncio.create_subprocess_exec(
            COMMAND, "worker", "--server", str(self.client.make_url("/")),
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.folder / name / "worker.log").read_text(errors="replace")

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture
async def cluster_app(
    start_app: StartApp, queue_url: str, tmp_path: Path, hardware_cache: Path
) -> AsyncIterator[tuple[Client, Workers]]:
    client = await start_app(queue_url=queue_url, worker_heartbeat=2.0, local_jobs=False)
    workers = Workers(client, tmp_path / "workers", hardware_cache)
    yield client, workers
    await workers.stop()


async def _status(client: Client, job: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/job-status/{job}", headers=auth())).json()
    return body


async def _online(client: Client, names: set[str], timeout: float = 60) -> None:
    """Until every named worker host has sent its first heartbeat (its probe takes a while)."""
    for _ in range(int(timeout / 0.2)):
        body = await (await client.get("/hardware", headers=auth(ADMIN))).json()
        if names <= {n["name"] for n in body.get("nodes", []) if n["online"] and n["slots"]}:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"worker hosts {names} never came online: {body.get('nodes')}")


async def _downloaded_sha256(client: Client, job: str) -> str:
    resp = await client.get(f"/download/{job}", headers=auth())
    assert resp.status == 200
    return hashlib.sha256(await resp.read()).hexdigest()


async def test_jobs_run_on_the_worker_hosts_and_arrive_verified(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    client, workers = cluster_app
    for name in ("w1", "w2"):
        await workers.start(name)
    await _online(client, {"w1", "w2"})
    jobs = [await post_job(client, env, item, device=f"phone-{item}") for item in
            ("hevc", "h264", "two-audio")]  # fmt: skip
    nodes = set()
    for job in jobs:
        done = await wait_status(client, job, "completed", timeout=40)
        assert done["node"] in ("w1", "w2"), done
        nodes.add(done["node"])
        assert await _downloaded_sha256(client, job) == done["checksum"]
        assert done["encoder"] in ("libx264", "copy")
    assert nodes == {"w1", "w2"}, "one slot each: the three jobs spread over both hosts"
    hardware = await (await client.get("/hardware", headers=auth(ADMIN))).json()
    listed = {n["name"]: n for n in hardware["nodes"]}
    assert set(listed) == {"w1", "w2"} and all(n["online"] for n in listed.values())


async def test_cancel_from_the_phone_stops_the_remote_ffmpeg(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    client, workers = cluster_app
    env.jellyfin.trickle.add("long")  # about 3 s of gradual progress
    proc = await workers.start("w1")
    job = await post_job(client, env, "long")
    running = await wait_status(client, job, "optimizing", min_progress=0, timeout=60)
    assert running["node"] == "w1"
    ffmpegs = [p for p in psutil.Process(proc.pid).children(recursive=True) if "ffmpeg" in p.name()]
    assert ffmpegs, "the worker runs the job's ffmpeg"
    assert (await client.delete(f"/cancel-job/{job}", headers=auth())).status == 200
    assert (await _status(client, job))["status"] == "cancelled"
    for _ in range(100):  # (not psutil.wait_procs: it would block the server's loop)
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ffmpegs):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the remote ffmpeg still runs\n" + workers.log("w1"))


async def test_a_killed_worker_hosts_job_completes_on_another(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    client, workers = cluster_app
    env.jellyfin.trickle.add("long")
    first = await workers.start("w1")
    job = await post_job(client, env, "long")
    running = await wait_status(client, job, "optimizing", min_progress=0, timeout=60)
    assert running["node"] == "w1"
    first.kill()  # kill -9: no goodbye, no retry sent
    await first.wait()
    await workers.start("w2")
    done = await wait_status(client, job, "completed", timeout=40)
    assert done["node"] == "w2"
    assert await _downloaded_sha256(client, job) == done["checksum"]


async def test_a_wrong_worker_token_is_refused(
    cluster_app: tuple[Client, Workers],
) -> None:
    _, workers = cluster_app
    proc = await workers.start("intruder", token="ovsw_" + "x" * 43)
    assert await asyncio.wait_for(proc.wait(), 60) == 1
    assert "the worker token is unknown or revoked" in workers.log("intruder")


async def test_nvenc_jobs_go_to_the_nvidia_host_and_software_jobs_spread(
    start_app: StartApp, queue_url: str, env: Env, fake: FakeHost, tmp_path: Path,
    hardware_cache: Path,
) -> None:  # fmt: skip
    user = tmp_path / "user"
    (user / "profiles").mkdir(parents=True)
    (user / "profiles" / "cpu-only.yaml").write_text(CPU_ONLY)
    env.jellyfin.trickle.add("long")  # the two software jobs overlap
    client = await start_app(
        queue_url=queue_url, worker_heartbeat=2.0, local_jobs=False, profiles_dir=user
    )
    workers = Workers(client, tmp_path / "workers", hardware_cache)
    # the NVIDIA host: the real worker code in this process, its GPU and ffmpeg played by
    # the fake host (NVML cannot be faked in another process)
    config = replace(
        env.config, ffmpeg_path=str(fake.ffmpeg), hardware_cache=fake.root / "hw.json",
        cache_dir=tmp_path / "rtx" / "cache", data_dir=tmp_path / "rtx" / "data",
        cpu_slots=1, worker_heartbeat=2.0, profiles_dir=user,
    )  # fmt: skip
    hardware, profiles = build_hardware(config, fake.host(nvidia=("NVIDIA GeForce RTX 4070",)))
    token = client.app[WORKER_TOKENS].create("rtx")
    rtx = asyncio.create_task(
        WorkerHost(config, hardware, profiles, str(client.make_url("/")), token).run()
    )
    try:
        await workers.start("cpu", PROFILES_DIR=str(user))
        await _online(client, {"rtx", "cpu"})
        nvenc = [
            await post_job(client, env, "hevc", device=f"tv-{n}", name=f"tv {n}") for n in range(2)
        ]
        software = [
            await post_job(client, env, "long", device=f"tab-{n}", profile="cpu-only", name=f"{n}")
            for n in range(2)
        ]
        for job in nvenc:
            done = await wait_status(client, job, "completed", timeout=60)
            assert (done["node"], done["encoder"]) == ("rtx", "h264_nvenc"), done
        nodes = set()
        for job in software:
            done = await wait_status(client, job, "completed", timeout=60)
            assert done["encoder"] in ("libx264", "copy"), done
            nodes.add(done["node"])
            assert await _downloaded_sha256(client, job) == done["checksum"]
        assert nodes == {"rtx", "cpu"}, "one CPU slot on each host: the two spread"
    finally:
        rtx.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rtx
        await workers.stop()


async def test_a_restart_of_the_server_loses_nothing(
    start_app: StartApp, queue_url: str, env: Env, tmp_path: Path, hardware_cache: Path
) -> None:
    env.jellyfin.trickle.add("long")
    port = free_port()
    settings = {"queue_url": queue_url, "worker_heartbeat": 2.0, "local_jobs": False}
    client = await start_app(port=port, **settings)
    workers = Workers(client, tmp_path / "workers", hardware_cache)
    try:
        await workers.start("w1")
        job = await post_job(client, env, "long")
        assert (await wait_status(client, job, "optimizing", min_progress=0))["node"] == "w1"
        await client.close()  # the server stops (its own cleanup runs) while w1 transcodes
        await asyncio.sleep(2.5)  # longer than a heartbeat: reports and reads fail meanwhile
        client = await start_app(port=port, **settings)
        done = await wait_status(client, job, "completed", timeout=60)
        assert done["node"] == "w1"
        assert await _downloaded_sha256(client, job) == done["checksum"]
        runs = [line for line in workers.log("w1").splitlines() if "Processing" in line]
        assert len([line for line in runs if f"key: {job}." in line]) == 1, runs  # not again
    finally:
        await workers.stop()


async def test_the_queue_proxy_answers_a_worker_only_about_its_own_queue(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    client, _ = cluster_app
    tokens = client.app[WORKER_TOKENS]
    bearer = {"Authorization": f"Bearer {tokens.create('laptop')}"}

    async def ask(body: dict[str, Any], headers: dict[str, str] = bearer) -> tuple[int, str]:
        resp = await client.post("/worker/queue", json=body, headers=headers)
        return resp.status, await resp.text()

    saq_job = {"function": "transcode", "key": "k.1", "queue": "node.laptop", "kwargs": {}}
    assert (await ask({"kind": "enqueue", "job": json.dumps(saq_job)}))[0] == 403
    foreign = {**saq_job, "queue": "node.gaming-pc"}  # another host's job
    status, text = await ask({"kind": "finish", "job": json.dumps(foreign), "status": "complete"})
    assert status == 403 and "its own queue" in text
    info = {"stats": {}, "queue_key": "node.gaming-pc", "metadata": {"slots": 99, "devices": []}}
    body = {"kind": "write_worker_info", "worker_id": "gaming-pc@x", "info": info, "ttl": 5}
    assert (await ask(body))[0] == 403  # no host speaks for another
    assert (await ask({"kind": "count", "count_kind": "queued"}))[0] == 403
    assert (await ask({"kind": "dequeue"}, {"Authorization": ALICE}))[0] == 401
    # what it may do: say who it is, and ask for work (none: an empty answer)
    body = {**body, "worker_id": "laptop@x", "info": {**info, "queue_key": "node.laptop"}}
    assert (await ask(body))[0] == 200
    assert await ask({"kind": "dequeue", "timeout": 0.1}) == (200, "")
    hardware = await (await client.get("/hardware", headers=auth(ADMIN))).json()
    assert [(n["name"], n["slots"]) for n in hardware["nodes"]] == [("laptop", 99)]


async def test_a_worker_host_keeps_the_items_sidecar_subtitles(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    """The phone sent no MediaStreams: the worker asks the server for the item, then for the
    chosen sidecar file (Jellyfin sees the user's token from the server, never the worker)."""
    client, workers = cluster_app
    env.jellyfin.subtitles["h264"] = {5: GERMAN}
    env.jellyfin.streams["h264"] = [_stream(5, "srt", "ger", IsExternal=True)]
    await workers.start("w1")
    body = {
        "url": env.url("h264", SubtitleStreamIndex="5"),
        "deviceId": "phone-1",
        "itemId": "h264",
        "item": {"Id": "h264", "Name": "Film"},
    }
    resp = await client.post("/optimize-version", json=body, headers=auth())
    assert resp.status == 201, await resp.text()
    done = await wait_status(client, (await resp.json())["id"], "completed", timeout=60)
    assert done["node"] == "w1"
    (german,) = [t for t in done["tracks"] if t["type"] == "subtitle"]
    assert (german["index"], german["action"], german["external"]) == (5, "convert", True)
    assert any("/Subtitles/5/Stream.srt" in r for r in env.jellyfin.subtitle_requests)
    with av.open(done["outputPath"]) as box:
        (track,) = box.streams.subtitles
        assert track.metadata.get("language") == "ger"
        index = track.index  # (a stream's fields are gone once its file is closed)
    assert cues(done["outputPath"], index) == ["Guten Tag"]


async def test_idle_workers_waiting_for_a_job_leave_the_queue_database_to_others(
    cluster_app: tuple[Client, Workers],
) -> None:
    """More idle workers than the server's pool has connections: while they all wait for a
    job, another worker's call is still answered (SAQ's LISTEN held a connection each)."""
    client, _ = cluster_app
    queues = []
    for n in range(6):
        token = client.app[WORKER_TOKENS].create(f"idle{n}")
        queue = HttpQueue(
            str(client.make_url("/worker/queue")),
            name=f"node.idle{n}",
            headers={"Authorization": f"Bearer {token}"},
        )
        await queue.connect()
        queues.append(queue)
    try:
        waiting = [asyncio.create_task(q.dequeue(timeout=5)) for q in queues[:5]]
        await asyncio.sleep(1)  # all five are waiting on the server now
        assert await queues[5].job("no-such-job") is None
        assert not any(task.done() for task in waiting), "answered only once a wait ended"
        assert await asyncio.gather(*waiting) == [None] * 5
    finally:
        for queue in queues:
            await queue.disconnect()


async def test_with_shared_storage_a_worker_writes_its_output_in_place(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    """SERVER_CACHE_DIR: the server's cache folder mounted on the worker host. The output is
    written there instead of uploaded; the server hashes it before the job completes."""
    client, workers = cluster_app
    await workers.start("w1", SERVER_CACHE_DIR=str(env.config.cache_dir))
    job = await post_job(client, env, "hevc")
    done = await wait_status(client, job, "completed", timeout=60)
    assert done["node"] == "w1"
    assert client.app[UPLOADS].bytes_written == 0, "nothing came over HTTP"
    assert await _downloaded_sha256(client, job) == done["checksum"]
    assert sorted(p.name for p in env.config.cache_dir.iterdir()) == [f"{job}.mp4"]


async def test_a_finish_the_store_refuses_does_not_strand_the_job(
    cluster_app: tuple[Client, Workers], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's data folder is full as a worker reports its job done: the report is
    not applied, the job is not left optimizing on no host, and it runs again."""
    client, workers = cluster_app
    refused = _fail_once(client.app[STORE], JobStatus.COMPLETED, monkeypatch)
    await workers.start("w1")
    await _online(client, {"w1"})
    job = await post_job(client, env, "h264")
    done = await wait_status(client, job, "completed", timeout=90)
    assert refused == [job], "the first completion was refused"
    assert done["node"] == "w1"
    assert await _downloaded_sha256(client, job) == done["checksum"]
    assert client.app[STORE].jobs(statuses=[JobStatus.OPTIMIZING]) == []


async def test_a_dispatch_the_store_no_longer_gives_a_host_is_not_handed_out(
    cluster_app: tuple[Client, Workers], env: Env
) -> None:
    """A host back after being declared lost may find an old dispatch still queued for it
    (its abort failed, say): the job ran elsewhere or waits here, so it is ended, not run."""
    client, _ = cluster_app
    bearer = {"Authorization": f"Bearer {client.app[WORKER_TOKENS].create('laptop')}"}
    job = await post_job(client, env, "h264")  # no host online: it waits here
    queue = await client.app[DISPATCHER].queue("laptop")
    stale = f"{job}.1234"  # an earlier dispatch of it to this host
    await queue.enqueue("transcode", key=stale, timeout=0, retries=1, job={"id": job})
    resp = await client.post(
        "/worker/queue", json={"kind": "dequeue", "timeout": 1.0}, headers=bearer
    )
    assert (resp.status, await resp.text()) == (200, ""), "no work handed out"
    ended = await queue.job(stale)
    assert ended is not None and ended.status == Status.ABORTED
    assert (await _status(client, job))["status"] == "queued"


async def test_a_worker_host_reads_an_hls_source_through_both_relays(
    cluster_app: tuple[Client, Workers], env: Env, tmp_path: Path, rendition: Rendition
) -> None:
    """The worker host's ffmpeg reads its relay, which reads the server's source route,
    which reads Jellyfin: each relay rewrites the playlists it passes (the server's tokens
    inside the worker's), each checks its own rules, and all of the stream arrives."""
    client, _ = cluster_app
    jellyfin_hls(env, rendition, tmp_path / "hls")
    config = replace(
        env.config, cache_dir=tmp_path / "w1" / "cache", data_dir=tmp_path / "w1" / "data",
        cpu_slots=1, worker_heartbeat=2.0,
    )  # fmt: skip
    hardware, profiles = build_hardware(config)
    token = client.app[WORKER_TOKENS].create("w1")
    host = WorkerHost(config, hardware, profiles, str(client.make_url("/")), token)
    running = asyncio.create_task(host.run())  # this tree's worker code, in this process
    try:
        await _online(client, {"w1"})
        done = await wait_status(client, await post_job(client, env, "hls"), "completed")
        assert done["node"] == "w1"
        info = probe.probe(done["outputPath"], frames=False)
        assert info.duration is not None and info.duration > 2.5, "all three segments"
        fetched = " ".join(env.jellyfin.stream_requests)
        assert all(f"/Videos/hls-{n}/seg{n}.ts" in fetched for n in range(3)), fetched
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
