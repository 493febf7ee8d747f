"""Retention with an injected clock: TIME_TO_KEEP_FILES and the grace after collection."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import ADMIN, Env, StartApp, auth, post_job, wait_status

from optimized_versions.keys import JANITOR

HOUR = 3600.0


async def test_outputs_expire_after_time_to_keep_files(env: Env, start_app: StartApp) -> None:
    env.now = 1_800_000_000.0
    client = await start_app(time_to_keep_files=2)
    done = await wait_status(client, await post_job(client, env, "h264"), "completed")
    failed = await wait_status(client, await post_job(client, env, "corrupt"), "failed")
    janitor = client.app[JANITOR]

    env.now += 2 * HOUR - 1
    assert janitor.sweep() == 0
    assert Path(done["outputPath"]).exists()

    env.now += 1
    assert janitor.sweep() == 2
    assert not Path(done["outputPath"]).exists()
    for job in (done, failed):
        assert (await client.get(f"/job-status/{job['id']}", headers=auth())).status == 404
    stats = await (await client.get("/statistics", headers=auth())).json()
    assert (stats["totalTranscodes"], stats["completedJobs"], stats["uniqueDevices"]) == (2, 1, 1)
    assert stats["cacheSize"] == "0 B"


async def test_collected_outputs_go_after_the_grace_period(env: Env, start_app: StartApp) -> None:
    env.now = 1_800_000_000.0
    client = await start_app(removal_grace=300)
    kept = await wait_status(client, await post_job(client, env, "h264"), "completed")
    collected = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    await client.delete(f"/cancel-job/{collected['id']}", headers=auth())
    janitor = client.app[JANITOR]

    env.now += 299
    assert janitor.sweep() == 0
    assert (await client.get(f"/download/{collected['id']}", headers=auth())).status == 200
    env.now += 1
    assert janitor.sweep() == 1
    assert not Path(collected["outputPath"]).exists()
    assert (await client.get(f"/download/{collected['id']}", headers=auth())).status == 404
    jobs = await (await client.get("/all-jobs", headers=auth(ADMIN))).json()
    assert [j["id"] for j in jobs] == [kept["id"]]
    assert Path(kept["outputPath"]).exists()


async def test_the_sweep_runs_by_itself(env: Env, start_app: StartApp) -> None:
    client = await start_app(cleanup_interval=0.05, removal_grace=0)
    job = await wait_status(client, await post_job(client, env, "h264"), "completed")
    await client.delete(f"/cancel-job/{job['id']}", headers=auth())
    for _ in range(100):
        if not Path(job["outputPath"]).exists():
            break
        await asyncio.sleep(0.02)
    assert not Path(job["outputPath"]).exists()


async def test_expiry_releases_a_device_held_by_the_cache_limit(
    env: Env, start_app: StartApp
) -> None:
    env.now = 1_800_000_000.0
    client = await start_app(max_cached_per_user=1, time_to_keep_files=1)
    first = await wait_status(client, await post_job(client, env, "h264"), "completed")
    held = await post_job(client, env, "hevc")
    await wait_status(client, held, "pending downloads limit")
    env.now += HOUR
    assert client.app[JANITOR].sweep() == 1  # the phone never collected it: it expired
    assert not Path(first["outputPath"]).exists()
    await wait_status(client, held, "completed")
