"""Jobs survive restarts and crashes; the cache folder and the store agree afterwards."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import ALICE, Env, StartApp, auth, post_job, wait_status

from optimized_versions.jellyfin.urls import rewrite_onto
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.jobs.store import JobStore
from optimized_versions.keys import STORE


async def test_restart_in_the_middle_of_a_transcode(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    first = await start_app()
    job_id = await post_job(first, env, "long")
    await wait_status(first, job_id, "optimizing", min_progress=0)
    await first.close()  # graceful stop: ffmpeg is stopped, the job goes back to the queue

    store = JobStore(env.config.data_dir / "jobs.sqlite3", time.time)
    job = store.get(job_id)
    store.close()
    assert job is not None and job.status is JobStatus.QUEUED and job.progress == 0
    assert list(env.config.cache_dir.iterdir()) == [], "partial output left behind"

    env.jellyfin.trickle.clear()
    second = await start_app()
    done = await wait_status(second, job_id, "completed", token=ALICE)
    assert done["progress"] == 100 and done["checksum"]
    resp = await second.get(f"/download/{job_id}", headers=auth())
    assert resp.status == 200 and len(await resp.read()) == done["size"]


async def test_shutting_down_refuses_new_work(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    await client.app.shutdown()
    resp = await client.post("/optimize-version", json={"url": env.url("h264")}, headers=auth())
    assert resp.status == 503
    assert "shutting down" in (await resp.json())["message"]


def _job(job_id: str, cache: Path, status: JobStatus = JobStatus.QUEUED) -> Job:
    return Job(
        id=job_id,
        owner_id="u-alice",
        owner_name="alice",
        device_id="phone",
        item_id=job_id,
        item={},
        input_url="http://x/?api_key=REDACTED",
        file_extension="ts",
        profile="h264-1080p",
        status=status,
        created_at=time.time(),
        output_path=str(cache / f"{job_id}.mp4"),
    )


async def test_start_after_a_crash_reconciles_store_and_files(
    env: Env, start_app: StartApp
) -> None:
    cache, data = env.config.cache_dir, env.config.data_dir
    cache.mkdir(parents=True)
    data.mkdir(parents=True)
    store = JobStore(data / "jobs.sqlite3", time.time)
    # a job that was optimizing when the power went
    crashed = _job("crashed", cache)
    store.add(crashed, rewrite_onto(env.url("h264"), env.jellyfin_url))
    store.transition(crashed, JobStatus.OPTIMIZING)
    (cache / "crashed.mp4.part").write_bytes(b"half a film")
    # a completed job whose file survived, one whose file vanished, one whose file was cut
    for name, content in [("kept", b"x" * 100), ("vanished", None), ("truncated", b"x" * 10)]:
        job = _job(name, cache)
        store.add(job, env.url("h264"))
        store.transition(job, JobStatus.OPTIMIZING)
        store.transition(job, JobStatus.COMPLETED, size=100, checksum="0" * 64)
        if content is not None:
            (cache / f"{name}.mp4").write_bytes(content)
    (cache / "stray.mp4").write_bytes(b"belongs to nobody")
    (cache / "notes.txt").write_text("not ours: left alone")
    store.close()

    client = await start_app()
    assert sorted(p.name for p in cache.iterdir() if p.name != "crashed.mp4") == [
        "kept.mp4",
        "notes.txt",
    ]
    app_store = client.app[STORE]
    assert app_store.get("vanished") is None and app_store.get("truncated") is None
    assert (await client.get("/download/kept", headers=auth())).status == 200
    done = await wait_status(client, "crashed", "completed")
    assert done["backend"] == "copy"
