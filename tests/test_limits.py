"""Bounded per user: waiting jobs and item size are capped, and the scheduler never reads
the (possibly large) items of waiting jobs."""

from __future__ import annotations

import json

from conftest import ALICE, BOB, Env, StartApp, auth, post_job, wait_status

from optimized_versions.keys import SCHEDULER, STORE


def _body(env: Env, source: str, **extra: object) -> dict[str, object]:
    return {"url": env.url(source), "deviceId": "phone", "itemId": source, **extra}


async def test_an_item_over_the_cap_is_413(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    big = {"Id": "x", "Overview": "x" * 70_000}
    resp = await client.post("/optimize-version", json=_body(env, "h264", item=big), headers=auth())
    assert resp.status == 413
    message = (await resp.json())["message"]
    assert message.startswith("item is too large: ") and "at most 65536" in message
    fits = {"Id": "x", "Overview": "x" * 60_000}
    resp = await client.post(
        "/optimize-version", json=_body(env, "h264", item=fits), headers=auth()
    )
    assert resp.status == 201


async def test_waiting_jobs_per_user_are_capped(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app(max_queued_per_user=3)
    running = await post_job(client, env, "long")
    for _n in range(60):  # let the first one start: it no longer waits
        job = await (await client.get(f"/job-status/{running}", headers=auth())).json()
        if job["status"] == "optimizing":
            break
    waiting = [await post_job(client, env, "h264", device=f"d{n}") for n in range(3)]
    resp = await client.post("/optimize-version", json=_body(env, "hevc"), headers=auth(ALICE))
    assert resp.status == 429
    assert (
        "3 of your jobs are already waiting (MAX_QUEUED_PER_USER)" in (await resp.json())["message"]
    )
    assert await post_job(client, env, "h264", device="d0") == waiting[0], "a retry still works"
    assert await post_job(client, env, "hevc", token=BOB), "other users are not held"
    await client.delete(f"/cancel-job/{waiting[0]}", headers=auth())
    assert await post_job(client, env, "hevc")
    await client.delete("/delete-cache", headers=auth("admin-token-0123456789"))


async def test_a_scheduler_pass_reads_no_items(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    blocker = await post_job(client, env, "long")
    item = {"Id": "e", "Overview": "x" * 20_000}
    for n in range(30):
        body = _body(env, "h264", item=item, deviceId=f"d{n}", itemId=f"e{n}")
        assert (await client.post("/optimize-version", json=body, headers=auth())).status == 201
    statements: list[str] = []
    store = client.app[STORE]
    store._db.set_trace_callback(statements.append)
    try:
        client.app[SCHEDULER]._fill_slots()
    finally:
        store._db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads, "the pass read the waiting jobs"
    for sql in reads:
        columns = sql.split(" FROM ")[0]
        assert "item," not in columns.replace("item_id", ""), sql
    assert json.dumps(item) not in "".join(statements)
    await client.delete(f"/cancel-job/{blocker}", headers=auth())
    await client.delete("/delete-cache", headers=auth("admin-token-0123456789"))


def test_the_list_cache_is_bounded_and_versioned() -> None:
    from optimized_versions.web.api.listcache import ListCache

    cache = ListCache(body=10, total=25)
    cache.put("a", 1, b"x" * 10)
    assert cache.get("a", 1) == b"x" * 10 and cache.get("a", 2) is None, "a write makes it stale"
    cache.put("big", 1, b"x" * 11)
    assert cache.get("big", 1) is None, "a list over the body limit is not kept"
    cache.put("b", 1, b"y" * 10)
    cache.put("c", 1, b"z" * 10)  # 30 bytes > 25: the least recently used goes
    assert cache.get("a", 1) is None and cache.get("c", 1) == b"z" * 10


async def test_an_unchanged_list_is_answered_again_and_a_change_shows(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    job_id = await post_job(client, env, "corrupt")
    await wait_status(client, job_id, "failed")
    url = "/all-jobs?deviceId=phone-1"
    first = await (await client.get(url, headers=auth())).read()
    again = await (await client.get(url, headers=auth())).read()
    assert first == again and json.loads(first)[0]["status"] == "failed"
    await client.delete(f"/cancel-job/{job_id}", headers=auth())
    assert json.loads(await (await client.get(url, headers=auth())).read()) == []
    other = await (await client.get(url, headers=auth(BOB))).read()
    assert json.loads(other) == [], "another user's list is not this one"
