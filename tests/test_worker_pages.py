"""Worker hosts on the dashboard, in the admin's hands and in /metrics, through the real app
on a throwaway PostgreSQL: a real worker process (the console script) where jobs must run,
and elsewhere SAQ's own HttpQueue client with a real worker token sending the worker's real
heartbeat (worker_info through POST /worker/queue)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest
from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status
from saq.queue.http import HttpQueue
from test_metrics import samples, value
from test_workers import Client, Workers
from web_helpers import CSRF, csrf_of, sign_in

from optimized_versions.keys import DISPATCHER, WORKER_TOKENS
from optimized_versions.nodes.protocol import queue_name

pytestmark = pytest.mark.timeout(240)


HEARTBEAT = {  # what a worker with one NVIDIA GPU says of itself (nodes.worker.describe)
    "version": "9.9.9",
    "best": {"h264": "nvenc", "hevc": "nvenc"},
    "slots": 3,
    "busy": None,
    "devices": [
        {"id": "cpu", "vendor": "cpu", "name": "cpu", "slots": 1, "used": 0},
        {"id": "nvidia:0", "vendor": "nvidia", "name": "RTX 4070", "slots": 2, "used": 1},
    ],
}


def node_card(page: str, name: str) -> str:
    """The node's card on the page ("" when it is not listed)."""
    found = re.search(rf'<article class="card node" data-node="{name}".*?</article>', page, re.S)
    return found.group(0) if found else ""


async def page(client: Client, path: str = "/") -> str:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 200, (path, resp.status)
    return await resp.text()


async def heartbeat(client: Client, token: str, name: str, info: dict[str, Any]) -> None:
    """One heartbeat as a worker sends it: SAQ's HttpQueue through the queue proxy."""
    queue = HttpQueue(
        str(client.make_url("/worker/queue")),
        name=queue_name(name),
        headers={"Authorization": f"Bearer {token}"},
        max_retries=0,
    )
    await queue.connect()
    try:
        await queue.write_worker_info(f"{name}@test", {"queue_key": None, "stats": None,
                                                       "metadata": info}, ttl=10)  # fmt: skip
    finally:
        await queue.disconnect()


async def wait_for(check: Any, timeout: float = 30.0) -> Any:
    """Poll an async check until it answers something true; that answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check()
        if answer:
            return answer
        assert time.monotonic() < deadline, "it never happened"
        await asyncio.sleep(0.1)


async def form(client: Client, path: str, **fields: str) -> aiohttp.ClientResponse:
    """Post a dashboard form as the browser does, with the page's anti-forgery token."""
    data = {"csrf": await csrf_of(client, "/"), "back": "/", **fields}
    return await client.post(path, data=data, allow_redirects=False)


async def test_a_worker_host_on_the_page_drained_resumed_then_lost(
    start_app: StartApp, queue_url: str, env: Env, tmp_path: Any, hardware_cache: Any
) -> None:
    """A real worker: its card, its job's card, a drain that lets the running job finish and
    keeps the next off it (with the reason), a resume that lets it run, the metrics by node,
    and lost after two heartbeats once the process is killed."""
    client = await start_app(
        queue_url=queue_url, worker_heartbeat=2.0, local_jobs=False, metrics="open"
    )
    workers = Workers(client, tmp_path / "workers", hardware_cache)
    try:
        proc = await workers.start("w1")
        assert (await sign_in(client, token=ADMIN)).status == 303

        async def listed() -> str:
            card = node_card(await page(client), "w1")
            # online with its first heartbeat (a dequeue may come before it, naming no best)
            return card if 'data-online="yes"' in card and "h264: " in card else ""

        card = await wait_for(listed, 60)
        assert ">online<" in card and "h264: software" in card and "Drain" in card
        assert "unhealthy" not in card, "the real worker's heartbeat is well-formed"
        assert "0 used / 1 free" in card  # its cpu device: CPU_SLOTS=1 on the worker
        env.jellyfin.trickle.add("long")  # about 3 s of gradual progress
        first = await post_job(client, env, "long")
        running = await wait_status(client, first, "optimizing", min_progress=0, timeout=60)
        assert running["node"] == "w1"
        dashboard = await page(client)
        job_card = re.search(rf'data-job="{first}".*?</article>', dashboard, re.S)
        assert job_card is not None and "on w1" in job_card.group(0)
        assert f'href="/jobs/{first}"' in node_card(dashboard, "w1")  # its jobs, as links
        assert "<dt>worker host</dt><dd>w1</dd>" in await page(client, f"/jobs/{first}")

        drained = await form(client, "/admin/nodes/w1/drain")
        assert drained.status == 303 and drained.headers["Location"] == "/"
        now = await (await client.get(f"/job-status/{first}", headers=auth())).json()
        assert now["status"] == "optimizing", "drained while its job runs"
        assert "draining" in node_card(await page(client), "w1")
        second = await post_job(client, env, "hevc", device="phone-2")
        done = await wait_status(client, first, "completed", timeout=60)
        assert done["node"] == "w1", "a drained host finishes what it runs"

        async def held() -> str:
            job = await (await client.get(f"/job-status/{second}", headers=auth())).json()
            assert job["status"] == "queued", job
            return str(job.get("waitReason") or "") if "w1 is draining" in str(job) else ""

        assert "worker hosts: w1 is draining" in await wait_for(held)
        await asyncio.sleep(4.5)  # two more heartbeats of w1, with its slot free
        assert "w1 is draining" in await held(), "the drained host took no new job"
        assert "Resume" in node_card(await page(client), "w1")

        assert (await form(client, "/admin/nodes/w1/resume")).status == 303
        assert (await wait_status(client, second, "completed", timeout=60))["node"] == "w1"
        dashboard = await page(client)
        assert "Drain" in node_card(dashboard, "w1")
        row = re.search(rf'<li class="card row" data-job="{second}".*?</li>', dashboard, re.S)
        assert row is not None and "on w1" in row.group(0)  # the history says where it ran

        found = samples(await (await client.get("/metrics")).text())
        assert value(found, "ovs_jobs_finished_total", outcome="completed", node="w1") == 2
        assert value(found, "ovs_jobs_finished_total", node="local") == 0
        # every frame once, as this server counts its own: 20 s and 3 s at 24 fps
        assert value(found, "ovs_transcoded_frames_total", node="w1") == 480 + 72
        assert value(found, "ovs_node_online", node="w1") == 1
        assert value(found, "ovs_node_slots", node="w1") == 1
        assert value(found, "ovs_node_draining", node="w1") == 0
        assert 0 <= value(found, "ovs_node_heartbeat_age_seconds", node="w1") <= 4

        proc.kill()  # kill -9: no goodbye
        await proc.wait()

        async def lost() -> str:
            card = node_card(await page(client), "w1")
            return card if 'data-online="no"' in card else ""

        started = time.monotonic()
        assert ">lost<" in await wait_for(lost, 10)
        assert time.monotonic() - started >= 2.0  # not before two heartbeats were missed
        found = samples(await (await client.get("/metrics")).text())
        assert value(found, "ovs_node_online", node="w1") == 0
        assert value(found, "ovs_node_heartbeat_age_seconds", node="w1") > 4
    finally:
        await workers.stop()


async def test_a_token_made_on_the_page_is_shown_once_works_and_dies_when_revoked(
    start_app: StartApp, queue_url: str
) -> None:
    client = await start_app(queue_url=queue_url, worker_heartbeat=1.0, local_jobs=False)
    assert (await sign_in(client, token=ADMIN)).status == 303
    empty = await page(client)
    assert "Worker hosts" in empty and "No worker host has been heard from" in empty
    made = await form(client, "/admin/worker-tokens", name="laptop")
    assert made.status == 200 and made.headers["Cache-Control"] == "no-store"
    shown = re.search(r'id="worker-token">(ovsw_[^<]+)<', await made.text())
    assert shown is not None
    token = shown.group(1)
    dashboard = await page(client)
    assert token not in dashboard and 'data-token="laptop"' in dashboard
    assert token not in await (await client.get("/live.json")).text()
    hello = await client.get("/worker/hello", headers={"Authorization": f"Bearer {token}"})
    assert hello.status == 200 and (await hello.json())["node"] == "laptop"
    again = await form(client, "/admin/worker-tokens", name="laptop")
    assert again.status == 400 and "already has a token" in await again.text()
    for name in ("../x", "local"):  # "local" is this server in /metrics
        bad = await form(client, "/admin/worker-tokens", name=name)
        assert bad.status == 400 and "ovsw_" not in await bad.text(), name

    await heartbeat(client, token, "laptop", HEARTBEAT)  # the worker's real protocol
    card = node_card(await page(client), "laptop")
    assert 'data-online="yes"' in card and "9.9.9" in card and "h264: nvenc" in card
    assert "1 used / 1 free" in card and "RTX 4070" in card and "just now" in card
    live = await (await client.get("/live.json")).json()
    assert 'data-node="laptop"' in live["nodes"]
    row = re.search(r'<tr data-token="laptop">.*?</tr>', await page(client), re.S)
    assert row is not None and ">active<" in row.group(0) and "never" not in row.group(0)

    await asyncio.sleep(2.2)  # two heartbeats (1 s each) missed
    card = node_card(await page(client), "laptop")
    assert 'data-online="no"' in card and ">lost<" in card
    assert re.search(r"last heartbeat <span[^>]*>[23]s ago<", card), card

    revoked = await form(client, "/admin/worker-tokens/laptop/revoke")
    assert revoked.status == 303
    assert "revoked" in await page(client)
    gone = await client.get("/worker/hello", headers={"Authorization": f"Bearer {token}"})
    assert gone.status == 401
    with pytest.raises(aiohttp.ClientResponseError) as refused:
        await heartbeat(client, token, "laptop", HEARTBEAT)
    assert refused.value.status == 401
    assert (await form(client, "/admin/worker-tokens/laptop/revoke")).status == 404


async def test_forms_need_the_anti_forgery_token_and_an_admin(
    start_app: StartApp, queue_url: str
) -> None:
    client = await start_app(queue_url=queue_url, worker_heartbeat=1.0, local_jobs=False)
    token = client.app[WORKER_TOKENS].create("w1")
    await heartbeat(client, token, "w1", HEARTBEAT)
    assert (await sign_in(client, token=ADMIN)).status == 303
    posts = ["/admin/nodes/w1/drain", "/admin/nodes/w1/resume", "/admin/worker-tokens",
             "/admin/worker-tokens/w1/revoke"]  # fmt: skip
    for path in posts:
        for data in ({"name": "x"}, {"csrf": "forged", "name": "x"}):
            resp = await client.post(path, data=data, allow_redirects=False)
            assert resp.status == 403, (path, data)
    assert not client.app[DISPATCHER].fleet.nodes["w1"].draining
    assert client.app[WORKER_TOKENS].check(token) == "w1"
    assert (await form(client, "/admin/nodes/nobody/drain")).status == 404

    client.session.cookie_jar.clear()  # another browser
    assert (await sign_in(client, token=ALICE)).status == 303  # a user, not an admin
    seen = await page(client)
    assert 'data-node="w1"' in seen  # the hosts, as the devices, are everyone's to see
    assert "Worker tokens" not in seen and "/admin/" not in seen and "Drain" not in seen
    assert "/admin/" not in (await (await client.get("/live.json")).json())["nodes"]
    for path in posts:
        assert (await form(client, path, name="mine")).status == 403, path
    assert not client.app[DISPATCHER].fleet.nodes["w1"].draining
    assert [t.name for t in client.app[WORKER_TOKENS].all()] == ["w1"]


async def test_the_drain_api_is_for_admins_and_survives_a_restart(
    start_app: StartApp, queue_url: str, env: Env
) -> None:
    client = await start_app(queue_url=queue_url, worker_heartbeat=1.0, local_jobs=False)
    token = client.app[WORKER_TOKENS].create("w1")
    await heartbeat(client, token, "w1", HEARTBEAT)
    assert (await client.post("/worker/nodes/w1/drain")).status == 401
    assert (await client.post("/worker/nodes/w1/drain", headers=auth(ALICE))).status == 403
    worker = {"Authorization": f"Bearer {token}"}  # a worker cannot drain or resume itself
    assert (await client.post("/worker/nodes/w1/resume", headers=worker)).status == 401
    assert (await client.post("/worker/nodes/ghost/drain", headers=auth(ADMIN))).status == 404
    resp = await client.post("/worker/nodes/w1/drain", headers=auth(ADMIN))
    assert resp.status == 200
    assert (await resp.json()) == {
        "name": "w1",
        "draining": True,
        "message": "worker host w1 takes no new job; its running jobs finish",
    }
    job = await post_job(client, env, "h264")
    await wait_status(client, job, "queued")
    hardware = await (await client.get("/hardware", headers=auth(ADMIN))).json()
    assert hardware["nodes"][0]["draining"] is True

    again = await start_app(queue_url=queue_url, worker_heartbeat=1.0, local_jobs=False)
    await heartbeat(again, token, "w1", HEARTBEAT)
    assert again.app[DISPATCHER].fleet.nodes["w1"].draining, "the drain outlived a restart"

    async def reason() -> str:
        held = await (await again.get(f"/job-status/{job}", headers=auth())).json()
        assert held["status"] == "queued", held
        return str(held.get("waitReason") or "")

    assert "w1 is draining" in await wait_for(reason)
    resumed = await again.post("/worker/nodes/w1/resume", headers=auth(ADMIN))
    assert (await resumed.json())["draining"] is False
    sent = await wait_status(again, job, "optimizing")  # placed on w1 (no worker runs it)
    assert sent["node"] == "w1"


async def test_without_queue_url_there_is_no_section_and_no_node_label(
    start_app: StartApp, env: Env
) -> None:
    client = await start_app(metrics="open")
    assert (await sign_in(client, token=ADMIN)).status == 303
    dashboard = await page(client)
    assert "Worker hosts" not in dashboard and "Worker tokens" not in dashboard
    assert "nodes" not in (await (await client.get("/live.json")).json())
    assert (await client.post("/worker/nodes/w1/drain", headers=auth(ADMIN))).status == 404
    assert CSRF.search(dashboard) is not None
    job = await post_job(client, env, "h264")
    await wait_status(client, job, "completed")
    text = await (await client.get("/metrics")).text()
    assert "node=" not in text and "ovs_node_" not in text


async def test_jobs_this_server_runs_count_as_local_beside_worker_hosts(
    start_app: StartApp, queue_url: str, env: Env
) -> None:
    client = await start_app(queue_url=queue_url, worker_heartbeat=1.0, metrics="open")
    token = client.app[WORKER_TOKENS].create("w1")
    await heartbeat(client, token, "w1", {**HEARTBEAT, "busy": "CPU above 85%"})
    job = await post_job(client, env, "hevc")  # w1 is busy: this server runs it
    done = await wait_status(client, job, "completed")
    assert done.get("node") is None
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "ovs_jobs_finished_total", outcome="completed", node="local") == 1
    assert value(found, "ovs_jobs_finished_total", node="w1") == 0
    assert value(found, "ovs_node_slots", node="w1") == 3
    assert value(found, "ovs_node_slots_used", node="w1") == 1
    assert value(found, "ovs_node_jobs_running", node="w1") == 0
    for family in found:  # never a job id, a user or a file name in a label
        labels = " ".join(v for _, v in family[1])
        assert job not in labels and "alice" not in labels and ".mp4" not in labels
