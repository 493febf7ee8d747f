"""The SQLite store: the life cycle's rules, and no credential left once a job ends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status

from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.jobs.reads import PAGE
from optimized_versions.jobs.rows import FIELDS
from optimized_versions.jobs.store import InvalidTransition, JobStore
from optimized_versions.keys import STORE

SECRET = "very-secret-token-4242"
ID, ITEM = FIELDS.index("id"), FIELDS.index("item")


def _job(job_id: str) -> Job:
    return Job(
        id=job_id,
        owner_id="u",
        owner_name="n",
        device_id="d",
        item_id="i",
        item={"a": 1},
        input_url="http://jf/x?api_key=REDACTED",
        file_extension=None,
        profile="h264-1080p",
        status=JobStatus.QUEUED,
        created_at=time.time(),
        output_path="/tmp/x.mp4",
    )


def test_transitions_follow_the_life_cycle(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", time.time)
    job = _job("a")
    store.add(job, f"http://jf/x?api_key={SECRET}")
    with pytest.raises(InvalidTransition):
        store.transition(job, JobStatus.COMPLETED)  # never completed without running
    store.transition(job, JobStatus.OPTIMIZING)
    stale = store.get("a")
    assert stale is not None
    store.transition(job, JobStatus.FAILED, error="boom")
    with pytest.raises(InvalidTransition):
        store.transition(job, JobStatus.OPTIMIZING)  # a failed job never runs again
    assert stale.status is JobStatus.OPTIMIZING
    with pytest.raises(InvalidTransition):
        store.transition(stale, JobStatus.COMPLETED)  # a stale copy cannot overwrite
    assert store.get("a") == job
    other = _job("b")
    store.add(other, "http://jf/y")
    with pytest.raises(AttributeError):
        store.transition(other, JobStatus.CANCELLED, owner_id="someone else")
    store.close()


def test_the_source_credential_is_gone_when_the_job_ends(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path, time.time)
    job = _job("a")
    store.add(job, f"http://jf/x?api_key={SECRET}")
    assert store.source_url("a") == f"http://jf/x?api_key={SECRET}"
    store.transition(job, JobStatus.CANCELLED)
    assert store.source_url("a") is None
    store.close()
    for file in tmp_path.iterdir():  # the database and any WAL left behind
        assert SECRET.encode() not in file.read_bytes(), file.name


async def test_no_token_reaches_the_database_of_a_finished_job(
    env: Env, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    client = await start_app()
    job_id = await post_job(client, env, "h264")
    failing = await post_job(client, env, "no-such-item", device="d2")
    await wait_status(client, job_id, "completed")
    failed = await wait_status(client, failing, "failed")
    assert ALICE not in failed["error"] and failed["error"].endswith("answered HTTP 404")
    for file in env.config.data_dir.iterdir():  # while running: the WAL counts too
        assert ALICE.encode() not in file.read_bytes(), file.name
    await client.close()
    for file in env.config.data_dir.iterdir():
        assert ALICE.encode() not in file.read_bytes(), file.name
    assert ALICE not in caplog.text


def test_pages_cover_every_job_once_newest_first(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", time.time)
    for n in range(2 * PAGE + 3):
        job = _job(f"j{n:04d}")
        job.created_at = 1000.0 + n // 7  # many jobs share a timestamp
        job.item = {"n": n}
        store.add(job, "http://jf/x")
    seen = [(row[ID], json.loads(row[ITEM])) for page in store.pages_raw() for row in page]
    assert [item["n"] for _, item in seen] == list(range(2 * PAGE + 2, -1, -1))
    assert [job_id for job_id, _ in seen] == [job.id for job in store.jobs()]
    assert [r for page in store.pages_raw(statuses=[JobStatus.FAILED]) for r in page] == []
    exact = [len(page) for page in store.pages_raw(owner_id="u", device_id="d")]
    assert exact == [PAGE, PAGE, 3]  # whole pages, then the short last one ends the list


async def test_all_jobs_streams_long_lists_intact(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    store = client.app[STORE]
    for n in range(PAGE + 20):
        job = _job(f"job-{n}")
        job.owner_id, job.item = "u-admin", {"Name": f"Film {n}", "Nested": {"ü": [n]}}
        job.created_at += n
        store.add(job, "http://jf/x")
    resp = await client.get("/all-jobs", headers={"Authorization": ADMIN})
    jobs = await resp.json()
    assert len(jobs) == PAGE + 20
    assert jobs[0]["item"] == {"Name": f"Film {PAGE + 19}", "Nested": {"ü": [PAGE + 19]}}
    assert [j["id"] for j in jobs] == [f"job-{n}" for n in range(PAGE + 19, -1, -1)]
    assert await (await client.get("/all-jobs?deviceId=none", headers=auth(ADMIN))).json() == []
