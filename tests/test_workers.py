"""Worker hosts for real: the server on a throwaway PostgreSQL (SAQ's queues), worker hosts
as separate processes (the installed console script) with their own cache folders, real
ffmpeg on the generated clips, and the phone's API on the server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import ADMIN, Env, StartApp, auth, post_job, wait_status
from postgres import postgres
from saq.queue.http import HttpQueue
from served import COMMAND

from optimized_versions.keys import WORKER_TOKENS

pytestmark = pytest.mark.timeout(240)
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with postgres() as url:
        yield url


@pytest.fixture
def queue_url(cluster: str) -> str:
    """A database of its own for each test, on the module's cluster."""
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.replace("/postgres?", f"/{name}?")


class Workers:
    def __init__(self, client: Client, folder: Path, hardware_cache: Path) -> None:
        self.client, self.folder, self.hardware_cache = client, folder, hardware_cache
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.logs: list[IO[bytes]] = []

    async def start(self, name: str, token: str | None = None) -> asyncio.subprocess.Process:
        if token is None:
            token = self.client.app[WORKER_TOKENS].create(name)
        home = self.folder / name
        env = {
            **os.environ,
            "WORKER_TOKEN": token,
            "DATA_DIR": str(home / "data"),
            "CACHE_DIR": str(home / "cache"),
            "HARDWARE_CACHE": str(self.hardware_cache),
            "WORKER_HEARTBEAT": "1",
            "CPU_SLOTS": "1",
            "MIN_FREE_SPACE": str(64 * 1024 * 1024),
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
    client = await start_app(queue_url=queue_url, worker_heartbeat=1.0, local_jobs=False)
    workers = Workers(client, tmp_path / "workers", hardware_cache)
    yield client, workers
    await workers.stop()


async def _status(client: Client, job: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/job-status/{job}", headers=auth())).json()
    return body


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
