"""Job lists as kept (web/api/listcache.py): a write to one device's job makes that device's
lists stale and no other's, every kind of write shows in the next answer, the heads made at
start-up are the ones a list would make, and a list too long to keep is streamed intact."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ADMIN, Env, StartApp, auth

from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.jobs.reads import PAGE
from optimized_versions.jobs.store import JobStore
from optimized_versions.keys import STORE
from optimized_versions.web.api import api
from optimized_versions.web.api.listcache import LISTS, SHOWN, SLICE, ListCache


def _job(n: int, device: str, status: JobStatus = JobStatus.QUEUED) -> Job:
    return Job(
        id=f"job-{device}-{n:04d}",
        owner_id="u-admin",
        owner_name="root",
        device_id=device,
        item_id=f"item-{n}",
        item={"Name": f"Film {n}", "Nested": {"ü": [n]}},
        input_url="http://jf/x?api_key=REDACTED",
        file_extension="mkv",
        profile="h264-1080p",
        status=status,
        created_at=1_700_000_000.0 + n,
        output_path=f"/tmp/{device}-{n}.mp4",
    )


def _expected(store: JobStore, device: str) -> list[dict[str, Any]]:
    """A device's list as to_api writes it, read from the store without any cache."""
    jobs = store.jobs(device_id=device, statuses=SHOWN)
    return [job.to_api() for job in jobs if job.collected_at is None]


async def _list(client: Any, device: str) -> tuple[bytes, list[dict[str, Any]]]:
    resp = await client.get(f"/all-jobs?deviceId={device}", headers=auth(ADMIN))
    assert resp.status == 200
    body = await resp.read()
    return body, json.loads(body)


async def test_each_write_shows_in_its_device_list_only(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    store: JobStore = client.app[STORE]
    jobs = [_job(n, device) for n in range(6) for device in ("phone-a", "phone-b")]
    for job in jobs:
        store.add(job, "http://jf/x")
    a = {job.id: job for job in jobs if job.device_id == "phone-a"}
    ids = sorted(a)
    b_before, b_jobs = await _list(client, "phone-b")
    assert b_jobs == _expected(store, "phone-b")

    running = store.transition(a[ids[0]], JobStatus.OPTIMIZING, started_at=time.time())
    failed = store.transition(a[ids[1]], JobStatus.FAILED, error="no", finished_at=time.time())

    def progress() -> None:
        running.progress = 42.5
        store.save_progress(running, 10)

    writes: list[Callable[[], object]] = [
        lambda: store.note_wait(a[ids[2]], "all 1 job slots are in use", "slot"),
        lambda: store.promote(a[ids[3]]),
        progress,
        lambda: store.dismiss(failed),  # leaves the device's list
        lambda: store.delete(ids[4]),
        lambda: store.transition(a[ids[5]], JobStatus.CANCELLED, finished_at=time.time()),
        lambda: store.add(_job(99, "phone-a"), "http://jf/x"),
    ]
    seen = [(await _list(client, "phone-a"))[1]]
    for write in writes:
        write()
        _, now = await _list(client, "phone-a")
        assert now == _expected(store, "phone-a")
        assert now != seen[-1]  # the write changed what the list shows
        seen.append(now)
        assert (await _list(client, "phone-b"))[0] == b_before  # another device: as it was
    assert [job["id"] for job in seen[-1]] == ["job-phone-a-0099", ids[3], ids[2], ids[0]]
    assert seen[-1][-1]["progress"] == 42.5 and seen[-1][1]["startRequestedAt"]


async def test_a_list_too_long_to_keep_is_streamed_whole(
    env: Env, start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "BODY", 10_000)  # a few jobs are "too long" here
    client = await start_app()
    store: JobStore = client.app[STORE]
    for n in range(PAGE + 7):
        store.add(_job(n, "phone-a"), "http://jf/x")
    first, jobs = await _list(client, "phone-a")
    assert jobs == _expected(store, "phone-a") and len(jobs) == PAGE + 7
    assert (
        client.app[LISTS].get((None, "phone-a"), client.app[LISTS].device_written["phone-a"])
        is None
    )
    assert (await _list(client, "phone-a"))[0] == first
    empty = await client.get("/all-jobs?deviceId=nobody", headers=auth(ADMIN))
    assert await empty.json() == []


def _parts(lists: ListCache, store: JobStore, device: str) -> list[dict[str, Any]]:
    where = {"device_id": device, "statuses": SHOWN, "hide_collected": True}
    body = b"".join(part for page in lists.parts(store, **where) for part in page)
    result: list[dict[str, Any]] = json.loads(body)
    return result


def test_start_up_heads_are_current_even_when_jobs_change_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", time.time)
    lists = ListCache()
    store.subscribe(lists.changed)  # as the app wires them
    jobs = [_job(n, "phone-a") for n in range(PAGE + 30)]
    for job in jobs:
        store.add(job, "http://jf/x")
    warm = lists.warm(store)
    warm.send(None)  # the first SLICE heads of the first page (newest first) are made
    later = jobs[-(SLICE + 5)]  # in that page, past the first slice: its row is read already
    store.note_wait(later, "written while the heads were being made", "other")
    with pytest.raises(StopIteration):
        while True:
            warm.send(None)

    def no_rows(ids: list[str]) -> dict[str, Any]:  # only the job written meanwhile
        assert ids == [later.id]
        return JobStore.rows_raw(store, ids)

    monkeypatch.setattr(store, "rows_raw", no_rows)
    listed = _parts(lists, store, "phone-a")
    assert listed == _expected(store, "phone-a")
    assert next(j for j in listed if j["id"] == later.id)["waitReason"].startswith("written")
