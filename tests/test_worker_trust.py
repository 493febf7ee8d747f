"""A worker host is another machine: what it sends is data. Each attack here is a worker
host driven by hand, speaking SAQ's queue protocol through POST /worker/queue with a real
worker token, against the real app on a throwaway PostgreSQL: a bad message is that node's
problem (400, the node unhealthy), never everyone's, and its output passes the same
verification as a local one before its job completes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status
from test_workers import Client
from web_helpers import csrf_of, sign_in

from optimized_versions.keys import DISPATCHER, STORE, UPLOADS, WORKER_TOKENS

pytestmark = pytest.mark.timeout(120)

CPU = {"id": "cpu", "vendor": "cpu", "name": "cpu", "slots": 1, "used": 0}
INFO = {"version": "9.9.9", "best": {"h264": "software"}, "slots": 1, "busy": None,
        "devices": [CPU]}  # fmt: skip


class HandWorker:
    """A worker host driven by hand: what SAQ's HttpQueue would send, or worse."""

    def __init__(self, client: Client, name: str = "laptop") -> None:
        self.client, self.name = client, name
        self.bearer = {"Authorization": f"Bearer {client.app[WORKER_TOKENS].create(name)}"}

    async def send(self, body: dict[str, Any] | str) -> tuple[int, str]:
        text = body if isinstance(body, str) else json.dumps(body)
        headers = {**self.bearer, "Content-Type": "application/json"}
        resp = await self.client.post("/worker/queue", data=text, headers=headers)
        return resp.status, await resp.text()

    async def heartbeat(self, metadata: dict[str, Any]) -> tuple[int, str]:
        info = {"queue_key": f"node.{self.name}", "stats": None, "metadata": metadata}
        return await self.send(
            {"kind": "write_worker_info", "worker_id": f"{self.name}@x", "info": info, "ttl": 5}
        )

    @contextlib.asynccontextmanager
    async def alive(self) -> AsyncIterator[None]:
        """Heartbeats every half second while the block runs (lost after 2 heartbeats)."""

        async def beat() -> None:
            while True:
                await self.heartbeat(INFO)
                await asyncio.sleep(0.5)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def take(self) -> dict[str, Any]:
        """The next job handed to this host (SAQ's job, as a dict)."""
        for _ in range(100):
            status, text = await self.send({"kind": "dequeue", "timeout": 0.2})
            assert status == 200, text
            if text:
                job: dict[str, Any] = json.loads(text)
                return job
        raise AssertionError("no job was handed out")

    async def update(self, job: dict[str, Any], meta: dict[str, Any]) -> tuple[int, str]:
        body = {"kind": "update", "job": json.dumps(job), "status": None, "meta": meta}
        return await self.send(body)

    async def upload(self, job_id: str, data: bytes) -> None:
        """The whole output in one request, with its own (true) SHA-256."""
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        headers = {**self.bearer, "Upload-Offset": "0", "Upload-Complete": "?1",
                   "Repr-Digest": f"sha-256=:{digest}:"}  # fmt: skip
        resp = await self.client.patch(f"/worker/jobs/{job_id}/output", data=data, headers=headers)
        assert resp.status == 200, await resp.text()

    async def finish(self, job: dict[str, Any], data: bytes, **report: Any) -> tuple[int, str]:
        result = {"size": len(data), "checksum": hashlib.sha256(data).hexdigest(),
                  "backend": "software", "encoder": "libx264", "decoder": "software",
                  "fallbacks": [], "device": "cpu", **report}  # fmt: skip
        body = {"kind": "finish", "job": json.dumps(job), "status": "complete",
                "result": result, "error": None}  # fmt: skip
        return await self.send(body)


@pytest.fixture
async def remote(start_app: StartApp, queue_url: str) -> Client:
    """A server whose jobs run on worker hosts only (none here: it waits for one)."""
    return await start_app(
        queue_url=queue_url, worker_heartbeat=2.0, local_jobs=False, metrics="open"
    )


async def _handed(
    client: Client, env: Env, worker: HandWorker, device: str = "phone-1", **item: Any
) -> tuple[str, Any]:
    """A phone's job, running on ``worker``: its id and SAQ's job (a title of its own per
    device: one output each, none shared)."""
    name = f"Film {device}"
    body = {"url": env.url("h264", ALICE), "deviceId": device, "itemId": "h264",
            "fileExtension": "mp4", "item": {"Id": "h264", "Name": name, **item}}  # fmt: skip
    resp = await client.post("/optimize-version", json=body, headers=auth())
    assert resp.status == 201, await resp.text()
    job_id: str = (await resp.json())["id"]
    await wait_status(client, job_id, "optimizing", timeout=30)
    saq_job = await worker.take()
    assert saq_job["kwargs"]["job"]["id"] == job_id
    return job_id, saq_job


def _strict(text: str) -> Any:
    """JSON as JavaScript's JSON.parse reads it: no NaN, no Infinity."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def test_a_heartbeat_with_a_non_number_device_field_is_that_nodes_problem(
    remote: Client,
) -> None:
    """Point 1: ``"used": "lots"`` once made / and /live.json 500 for every user, lasting
    past the worker's silence and its token's revocation, until a restart."""
    client, worker = remote, HandWorker(remote)
    assert (await worker.heartbeat(INFO))[0] == 200
    bad = {**INFO, "devices": [{**CPU, "used": "lots"}]}
    status, text = await worker.heartbeat(bad)
    assert (await sign_in(client, token=ADMIN)).status == 303
    for path in ("/", "/live.json"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
    assert status == 400 and "devices[0].used" in text, text
    page = await (await client.get("/")).text()
    assert "unhealthy" in page and "devices[0].used" in page
    hardware = await (await client.get("/hardware", headers=auth(ADMIN))).json()
    [node] = hardware["nodes"]
    assert node["devices"] == [CPU] and "devices[0].used" in node["unhealthy"]
    metrics = await (await client.get("/metrics")).text()
    assert 'ovs_node_unhealthy{node="laptop"} 1.0' in metrics
    # an admin looked at it: resumed, what it sends is believed again
    resp = await client.post("/admin/nodes/laptop/resume",
                             data={"csrf": await csrf_of(client, "/"), "back": "/"},
                             allow_redirects=False)  # fmt: skip
    assert resp.status == 303
    assert client.app[DISPATCHER].fleet.nodes["laptop"].unhealthy is None
    # what a well-formed message says is shown as text, never as markup
    assert (await worker.heartbeat({**INFO, "busy": "<img src=x onerror=alert(1)>"}))[0] == 200
    page = await (await client.get("/")).text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page


async def test_a_heartbeat_with_a_device_that_is_no_object_stops_no_job(
    start_app: StartApp, queue_url: str, env: Env
) -> None:
    """Point 2: ``devices: ["x"]`` once crashed every scheduler pass while the node kept
    heartbeating: no job started anywhere, local ones included."""
    client = await start_app(queue_url=queue_url, worker_heartbeat=2.0)
    worker = HandWorker(client)
    nvenc = {**INFO, "best": {"h264": "nvenc"}, "slots": 4}  # better than this host
    status, text = await worker.heartbeat({**nvenc, "devices": ["x"]})
    job = await post_job(client, env, "h264")
    done = await wait_status(client, job, "completed", timeout=30)
    assert "node" not in done, "it ran here: the unhealthy node takes no job"
    assert status == 400 and "devices[0]" in text, text
    assert client.app[DISPATCHER].fleet.nodes["laptop"].unhealthy


@pytest.mark.parametrize(
    "meta",
    [
        '{"percent": 10, "speed": "fast", "size": 0, "frames": 0}',
        '{"percent": Infinity, "speed": 1.0, "size": 0, "frames": 0}',
        '{"percent": NaN, "speed": 1.0, "size": 0, "frames": 0}',
        '{"percent": 10, "speed": 1e400, "size": 0, "frames": 0}',
        '{"percent": 10, "speed": 1.0, "size": -5, "frames": 0}',
        '{"percent": 10, "speed": 1.0, "size": 0, "frames": 0, "plan": {"x": 1}}',
    ],
)
async def test_a_progress_report_that_is_no_figure_is_refused(
    remote: Client, env: Env, meta: str
) -> None:
    """Point 3: ``speed: "fast"`` once made /job-status and /all-jobs 500 for the job's
    owner; ``percent: Infinity`` put Infinity in the JSON, which JSON.parse rejects."""
    client, worker = remote, HandWorker(remote)
    async with worker.alive():
        job_id, saq_job = await _handed(client, env, worker)
        good = await worker.update(saq_job, {"percent": 40, "speed": 2.5, "size": 9, "frames": 3})
        assert good[0] == 200, good
        body = (f'{{"kind": "update", "job": {json.dumps(json.dumps(saq_job))}, '
                f'"status": null, "meta": {meta}}}')  # fmt: skip
        status, text = await worker.send(body)
        assert status == 400, text
        for path in (f"/job-status/{job_id}", "/all-jobs"):
            resp = await client.get(path, headers=auth(ADMIN))
            assert resp.status == 200, path
            _strict(await resp.text())
        job = _strict(await (await client.get(f"/job-status/{job_id}", headers=auth())).text())
        assert (job["progress"], job["speed"], job["size"]) == (40, 2.5, 9), "the good one stands"
        assert client.app[DISPATCHER].fleet.nodes["laptop"].unhealthy


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '{"kind": "dequeue", "timeout": "soon"}',
        '{"kind": "dequeue", "timeout": 1, "connection": "x"}',
        '{"kind": "jobs", "job_keys": "abc"}',
        '{"kind": "dequeue", "timeout": 86400}',
        '{"kind": "update", "status": "complete", "job": "{}"}',
        '{"kind": "finish", "status": "queued", "job": "{}"}',
        '{"kind": "job", "job_key": "a\\u0000b"}',
        '{"kind": "job", "job_key": "\\ud800"}',
        '{"kind": "finish", "status": "complete", "job": "{\\"queue\\": 1}"}',
        '{"kind": "notify", "job": "{\\"queue\\": \\"node.laptop\\", \\"key\\": \\"k\\", '
        '\\"function\\": \\"transcode\\", \\"not_saq\\": 1}"}',
    ],
)
async def test_a_malformed_queue_request_is_a_400_not_a_500(remote: Client, body: str) -> None:
    worker = HandWorker(remote)
    status, text = await worker.send(body)
    assert status == 400, text
    assert remote.app[DISPATCHER].fleet.nodes["laptop"].unhealthy


async def test_random_bytes_with_their_own_checksum_are_no_output(remote: Client, env: Env) -> None:
    """Point 4: random bytes uploaded with their own SHA-256 once became a completed job
    served as video/mp4 with a valid checksum. The output is read back as MP4 first."""
    client, worker = remote, HandWorker(remote)
    async with worker.alive():
        job_id, saq_job = await _handed(client, env, worker)
        junk = bytes(range(256)) * 4096
        await worker.upload(job_id, junk)
        assert (await worker.finish(saq_job, junk))[0] == 200
        failed = await wait_status(client, job_id, "failed", timeout=30)
    assert "laptop" in failed["error"] and "cannot be read back as MP4" in failed["error"]
    assert (await client.get(f"/download/{job_id}", headers=auth())).status == 404
    assert not list(env.config.cache_dir.glob(f"{job_id}*")), "nothing of it is kept"


async def test_a_playlist_uploaded_as_output_is_never_followed(
    remote: Client, env: Env, aiohttp_server: Any
) -> None:
    """An HLS playlist as the "output": opening it as what it says it is would make the
    server fetch the URLs in it. It is read as MP4 alone: nothing is fetched."""
    hits: list[str] = []

    async def secret(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"\x47" * 188 * 10, content_type="video/mp2t")

    app = web.Application()
    app.router.add_get("/{name}", secret)
    server = await aiohttp_server(app)
    playlist = (f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n"
                f"{server.make_url('/secret.ts')}\n#EXT-X-ENDLIST\n").encode()  # fmt: skip
    client, worker = remote, HandWorker(remote)
    async with worker.alive():
        job_id, saq_job = await _handed(client, env, worker)
        await worker.upload(job_id, playlist)
        assert (await worker.finish(saq_job, playlist))[0] == 200
        await wait_status(client, job_id, "failed", timeout=30)
    assert hits == []


AUDIO_KEPT = {"type": "audio", "index": 1, "codec": "aac", "action": "copy", "reason": "r",
              "outputCodec": "aac", "default": True, "forced": False}  # fmt: skip


async def test_a_real_output_completes_and_one_of_another_length_does_not(
    remote: Client, env: Env, media: Any
) -> None:
    """A genuine MP4 (H.264, one audio track, 3 s) is accepted as the report describes it;
    the same file for an item that lasts 20 s, or reported with a second audio track, is
    refused: the item's length (Jellyfin's RunTimeTicks) stands for the source's."""
    film = Path(media.h264).read_bytes()
    client, worker = remote, HandWorker(remote)
    async with worker.alive():
        good, saq_job = await _handed(client, env, worker, RunTimeTicks=30_000_000)
        await worker.upload(good, film)
        assert (await worker.finish(saq_job, film, tracks=[AUDIO_KEPT]))[0] == 200
        done = await wait_status(client, good, "completed", timeout=30)
        assert done["checksum"] == hashlib.sha256(film).hexdigest()
        download = await client.get(f"/download/{good}", headers=auth())
        assert download.status == 200 and await download.read() == film
        # a worker that writes the shared cache swaps the output for a link: not served
        output = Path(done["outputPath"])
        output.unlink()
        output.symlink_to(media.h264)
        assert (await client.get(f"/download/{good}", headers=auth())).status == 404

        longer, saq_job = await _handed(client, env, worker, "phone-2", RunTimeTicks=200_000_000)
        await worker.upload(longer, film)
        assert (await worker.finish(saq_job, film, tracks=[AUDIO_KEPT]))[0] == 200
        failed = await wait_status(client, longer, "failed", timeout=30)
        assert "lasts 3.0" in failed["error"] and "20.00 s" in failed["error"]

        two, saq_job = await _handed(client, env, worker, "phone-3")
        await worker.upload(two, film)
        second = {**AUDIO_KEPT, "index": 2}
        assert (await worker.finish(saq_job, film, tracks=[AUDIO_KEPT, second]))[0] == 200
        failed = await wait_status(client, two, "failed", timeout=30)
        assert "1 of 2 audio tracks" in failed["error"]


async def test_an_output_written_in_place_as_a_link_is_no_output(
    remote: Client, env: Env, media: Any
) -> None:
    """With shared storage a worker writes its output into the server's cache itself. A
    link there (to a file of the server's own, whose checksum it knows) would have been
    served to the phone as the job's output: only a plain file is taken."""
    client, worker = remote, HandWorker(remote)
    film = Path(media.h264)  # stands for any file on the server outside the cache
    async with worker.alive():
        job_id, saq_job = await _handed(client, env, worker)
        job = client.app[STORE].get(job_id)
        assert job is not None
        client.app[UPLOADS].verified(job).symlink_to(film)
        assert (await worker.finish(saq_job, film.read_bytes(), tracks=[AUDIO_KEPT]))[0] == 200
        failed = await wait_status(client, job_id, "failed", timeout=30)
    assert "no output arrived" in failed["error"] or "never arrived" in failed["error"]
    assert film.exists() and not list(env.config.cache_dir.glob(f"{job_id}*"))


async def test_a_link_left_as_the_partial_upload_is_never_written_through(
    remote: Client, env: Env, tmp_path: Path
) -> None:
    """A worker that can write the shared cache could leave ``<output>.upload`` as a link
    to a file of the server's own (its job store, say): the upload's bytes were appended
    there. The partial file is opened without following a link, and only a plain file is
    hashed (else the error would tell the size and SHA-256 of what the link points at)."""
    client, worker = remote, HandWorker(remote)
    victim = tmp_path / "jobs.sqlite3"  # stands for a file of the server's own
    victim.write_bytes(b"precious")
    async with worker.alive():
        job_id, _ = await _handed(client, env, worker)
        job = client.app[STORE].get(job_id)
        assert job is not None
        client.app[UPLOADS].partial(job).symlink_to(victim)
        url = f"/worker/jobs/{job_id}/output"
        offset = (await client.head(url, headers=worker.bearer)).headers["Upload-Offset"]
        digest = base64.b64encode(hashlib.sha256(b"precious junk").digest()).decode()
        headers = {**worker.bearer, "Upload-Offset": offset, "Upload-Complete": "?1",
                   "Repr-Digest": f"sha-256=:{digest}:"}  # fmt: skip
        resp = await client.patch(url, data=b" junk", headers=headers)
        text = await resp.text()
    assert victim.read_bytes() == b"precious"
    assert hashlib.sha256(b"precious").hexdigest() not in text, text
