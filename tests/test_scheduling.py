"""Scheduling on the machine's real load: fake readers, a fake GPU host, real jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import ADMIN, BOB, Env, StartApp, auth, post_job, wait_status
from gpu_host import FakeHost, start_fake

from optimized_versions.hardware.load import Latch
from optimized_versions.hardware.nvml import GpuReading
from optimized_versions.jobs.placement import nvenc_session_cap
from optimized_versions.keys import MONITOR


def sample(client: Any) -> None:
    """One load reading, as the server's interval takes it (it wakes the scheduler)."""
    client.app[MONITOR].sample()


async def load(client: Any) -> dict[str, Any]:
    body: dict[str, dict[str, Any]] = await (await client.get("/hardware", headers=auth())).json()
    return body["load"]


def test_session_cap_follows_the_driver() -> None:
    assert [
        nvenc_session_cap(d)
        for d in ("470.1", "535.2", "545", "550.54", "580.1", "590.3", "610", None, "x")
    ] == [3, 5, 5, 8, 8, 12, 12, 3, 3]


def test_hysteresis_keeps_a_verdict_until_well_below() -> None:
    latch = Latch(high=85, hysteresis=10)
    assert [latch.update(v) for v in (80, 86, 80, 76, 75, 84, 85)] == [
        False,
        True,
        True,
        True,
        False,
        False,
        True,
    ]


async def test_high_cpu_holds_jobs_until_it_drops(env: Env, start_app: StartApp) -> None:
    env.load.cpu = 95
    client = await start_app()
    job_id = await post_job(client, env, "h264")
    held = await wait_status(client, job_id, "queued")
    for _ in range(3):
        sample(client)
        held = await (await client.get(f"/job-status/{job_id}", headers=auth(ADMIN))).json()
    assert held["status"] == "queued"
    assert held["waitReason"].startswith("CPU above threshold (95% >= 85%)")
    env.load.cpu = 80  # below the threshold, not yet below threshold - hysteresis
    sample(client)  # smoothed: 87.5
    sample(client)  # 83.8: still held
    assert (await load(client))["hostBusy"].startswith("CPU above threshold")
    env.load.cpu = 10
    sample(client)  # 46.9: free, and the monitor wakes the scheduler
    await wait_status(client, job_id, "completed")


async def test_the_disk_floor_holds_jobs(env: Env, start_app: StartApp) -> None:
    env.load.disk = 1024**3
    client = await start_app(min_free_space=2 * 1024**3)
    job_id = await post_job(client, env, "h264")
    job = await wait_status(client, job_id, "queued")
    sample(client)
    job = await (await client.get(f"/job-status/{job_id}", headers=auth(ADMIN))).json()
    assert job["waitReason"] == ("disk floor: 1.0 GiB free in the cache folder, 2.0 GiB needed")
    env.load.disk = 10 * 1024**3
    sample(client)
    await wait_status(client, job_id, "completed")


async def test_low_memory_holds_jobs_until_it_recovers(env: Env, start_app: StartApp) -> None:
    env.load.memory = 5
    client = await start_app()
    job_id = await post_job(client, env, "h264")
    sample(client)
    job = await (await client.get(f"/job-status/{job_id}", headers=auth(ADMIN))).json()
    assert job["waitReason"] == "memory low (5% available)"
    env.load.memory = 25  # smoothed 15%: above the 10% floor, not yet 10 points above it
    sample(client)
    assert (await load(client))["hostBusy"] == "memory low (15% available)"
    job = await wait_status(client, job_id, "queued")
    env.load.memory = 60  # smoothed 37.5%: released, and the reading wakes the scheduler
    sample(client)
    await wait_status(client, job_id, "completed")


async def test_other_processes_nvenc_sessions_reduce_capacity(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    env.gpu_load.gpus[0] = GpuReading(encoder_percent=30, sessions=5)  # Jellyfin holds 5
    client = await start_fake(
        env,
        start_app,
        fake,
        fake.host(nvidia=("GeForce RTX 3060",)),
        spill_to_cpu=False,
        nvenc_sessions=5,
    )
    job_id = await post_job(client, env, "hevc")
    sample(client)
    job = await wait_status(client, job_id, "queued")
    slots = (await load(client))["devices"]["nvidia:0"]
    assert slots["sessions"] == 5 and slots["slots"] <= 0
    job = await (await client.get(f"/job-status/{job_id}", headers=auth(ADMIN))).json()
    assert job["waitReason"] == "no free slot on nvidia:0"
    env.gpu_load.gpus[0] = GpuReading(encoder_percent=30, sessions=2)
    sample(client)
    done = await wait_status(client, job_id, "completed", "failed")
    assert done["encoder"] == "h264_nvenc"


async def test_a_busy_encoder_holds_or_spills(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    env.gpu_load.gpus[0] = GpuReading(encoder_percent=97, sessions=0)
    client = await start_fake(
        env, start_app, fake, fake.host(nvidia=("RTX A4000",)), spill_to_cpu=False
    )
    job_id = await post_job(client, env, "hevc")
    sample(client)
    job = await (await client.get(f"/job-status/{job_id}", headers=auth(ADMIN))).json()
    assert job["waitReason"].startswith("nvidia:0: GPU encoder busy (97% >= 90%)")
    await client.close()
    spilling = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX A4000",)))
    sample(spilling)
    done = await wait_status(spilling, job_id, "completed", "failed")
    assert (done["status"], done["encoder"]) == ("completed", "libx264"), "spilled to the CPU"


@pytest.mark.parametrize("spill", [True, False])
async def test_gpu_and_cpu_side_by_side_and_spill_only_when_allowed(
    env: Env, start_app: StartApp, fake: FakeHost, spill: bool
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_fake(
        env,
        start_app,
        fake,
        fake.host(nvidia=("RTX A4000",)),
        nvenc_sessions=1,
        max_concurrent_jobs=3,
        spill_to_cpu=spill,
    )
    on_gpu = await post_job(client, env, "long")
    running = await wait_status(client, on_gpu, "optimizing")
    second = await post_job(client, env, "hevc", device="tablet")
    if spill:
        done = await wait_status(client, second, "completed")
        assert done["encoder"] == "libx264", "the GPU slot was taken: spilled to the CPU"
        used = (await load(client))["devices"]
        assert used["nvidia:0"]["used"] == 1 and used["cpu"]["used"] == 0
    else:
        for _ in range(40):
            held = await wait_status(client, second, "queued")
            if "waitReason" in held:
                break
            await asyncio.sleep(0.05)
        assert held["waitReason"] == "no free slot on nvidia:0", "no spill: it waits"
        assert (await load(client))["devices"]["cpu"]["used"] == 0
    assert running["status"] == "optimizing"
    await client.delete(f"/cancel-job/{on_gpu}", headers=auth())
    if not spill:
        done = await wait_status(client, second, "completed")
        assert done["encoder"] == "h264_nvenc"


async def test_one_users_season_does_not_hold_back_anothers_film(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    blocker = await post_job(client, env, "long")
    await wait_status(client, blocker, "optimizing")
    for n in range(20):
        env.jellyfin.items[f"e{n}"] = env.jellyfin.items["h264"]
    season = [await post_job(client, env, f"e{n}", device=f"alice-{n % 2}") for n in range(20)]
    film = await post_job(client, env, "hevc", token=BOB, device="bob")
    await client.delete(f"/cancel-job/{blocker}", headers=auth())
    done = await wait_status(client, film, "completed")
    episodes = [
        await (await client.get(f"/job-status/{j}", headers=auth(ADMIN))).json() for j in season
    ]
    before = [e for e in episodes if e.get("startedAt", "9") < done["startedAt"]]
    assert len(before) <= 1, "at most one of the season's jobs went first"
    await client.delete("/delete-cache", headers=auth(ADMIN))


async def test_two_software_slots_run_three_jobs(env: Env, start_app: StartApp) -> None:
    client = await start_app(cpu_slots=2, max_concurrent_jobs=4, max_cached_per_user=0)
    env.jellyfin.trickle.add("long")
    jobs = [  # three outputs (titles differ): one of them would be shared, never run
        await post_job(client, env, "long", device=f"d{n}", name=f"{n}") for n in range(3)
    ]
    states = []
    for _ in range(40):
        states = [
            (await (await client.get(f"/job-status/{j}", headers=auth(ADMIN))).json()) for j in jobs
        ]
        if sum(s["status"] == "optimizing" for s in states) == 2:
            break
    assert sorted(s["status"] for s in states) == ["optimizing", "optimizing", "queued"]
    waiting = next(s for s in states if s["status"] == "queued")
    assert waiting["waitReason"] == "no free slot on cpu"
    assert (await load(client))["devices"]["cpu"] == {"slots": 2, "used": 2}
    env.jellyfin.trickle.clear()
    for job in jobs:
        await wait_status(client, job, "completed")
