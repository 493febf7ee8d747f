"""What the real client and a review found: a step down the ladder goes through placement,
a failed job can be dismissed, Android's bare HEAD, If-Range with entity tags."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import ADMIN, ALICE, Env, StartApp, auth, post_job, wait_status
from gpu_host import FakeHost, start_fake

from optimized_versions.keys import PLACER

CPU_ONLY = """
name: cpu-only
container: mp4
hardware: software
video: {codec: h264, max_width: 1920, max_height: 1080, max_bitrate: 8000000}
audio: {codec: aac, channels: 2, bitrate: 128000}
"""
NO_NVENC_LIBRARY = "[h264_nvenc @ 0x1] Cannot load libnvidia-encode.so.1"


async def test_a_fallback_to_the_cpu_waits_for_a_cpu_slot(
    env: Env, start_app: StartApp, fake: FakeHost, tmp_path: Path
) -> None:
    user = tmp_path / "user"
    (user / "profiles").mkdir(parents=True)
    (user / "profiles" / "cpu-only.yaml").write_text(CPU_ONLY)
    env.jellyfin.trickle.add("long")
    client = await start_fake(
        env,
        start_app,
        fake,
        fake.host(nvidia=("GeForce RTX 3060",)),
        cpu_slots=1,
        max_concurrent_jobs=4,
        profiles_dir=user,
    )
    placer = client.app[PLACER]
    on_cpu = await post_job(client, env, "long", profile="cpu-only")
    await wait_status(client, on_cpu, "optimizing")
    assert placer.used == {"cpu": 1}
    # NVENC passed the probe; now the driver's encode library is gone: every NVENC rung fails
    fake.set(fail={"h264_nvenc": {"text": NO_NVENC_LIBRARY, "times": -1}})
    gpu_job = await post_job(client, env, "hevc", device="tablet")
    held = await wait_status(client, gpu_job, "queued", timeout=30)
    for _ in range(200):
        held = await (await client.get(f"/job-status/{gpu_job}", headers=auth())).json()
        if held.get("waitReason", "").startswith("fell back"):
            break
        await asyncio.sleep(0.05)
    assert held["status"] == "queued", "it must not run beside the CPU's job"
    assert held["waitReason"] == "fell back to cpu: no free slot on cpu"
    assert len(held["fallbacks"]) == 2 and "NVIDIA_DRIVER_CAPABILITIES" in held["fallbacks"][0]
    assert placer.used.get("cpu") == 1 and placer.used.get("nvidia:0", 0) == 0
    assert (await wait_status(client, on_cpu, "optimizing"))["status"] == "optimizing"

    await client.delete(f"/cancel-job/{on_cpu}", headers=auth())
    done = await wait_status(client, gpu_job, "completed")
    assert (done["encoder"], done["backend"]) == ("libx264", "software")
    assert len(done["fallbacks"]) == 2, "the trail of the first run is kept"
    assert placer.used == {"cpu": 0, "nvidia:0": 0}


async def test_a_fallback_takes_a_free_cpu_slot_and_gives_back_the_gpu(
    env: Env, start_app: StartApp, fake: FakeHost
) -> None:
    client = await start_fake(env, start_app, fake, fake.host(nvidia=("RTX A4000",)), cpu_slots=1)
    fake.set(fail={"h264_nvenc": {"text": NO_NVENC_LIBRARY, "times": -1}})
    done = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    assert done["encoder"] == "libx264" and len(done["fallbacks"]) == 2
    assert client.app[PLACER].used == {"nvidia:0": 0, "cpu": 0}


async def test_a_dismissed_failed_job_leaves_the_devices_list(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    failed = await wait_status(client, await post_job(client, env, "corrupt"), "failed")
    listed = await (await client.get("/all-jobs?deviceId=phone-1", headers=auth())).json()
    assert [j["id"] for j in listed] == [failed["id"]], "a failed card shows until dismissed"
    resp = await client.delete(f"/cancel-job/{failed['id']}", headers=auth())
    assert resp.status == 200
    assert (await resp.json())["message"] == f"job {failed['id']} failed and is dismissed"
    listed = await (await client.get("/all-jobs?deviceId=phone-1", headers=auth())).json()
    assert listed == [], "the card must not come back on the phone"
    status = await (await client.get(f"/job-status/{failed['id']}", headers=auth())).json()
    assert status["status"] == "failed" and "cannot read the source" in status["error"]
    assert "dismissedAt" in status
    everything = await (await client.get("/all-jobs", headers=auth())).json()
    assert [j["id"] for j in everything] == [failed["id"]], "still in the full history"
    again = await client.delete(f"/cancel-job/{failed['id']}", headers=auth())
    assert again.status == 200


async def test_androids_first_head_needs_no_token(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    url = f"/download/{job['id']}"
    bare = await client.head(url)
    assert bare.status == 200
    assert bare.headers["Content-Length"] == str(job["size"])
    assert bare.headers["Accept-Ranges"] == "bytes"
    for private in ("X-File-Checksum", "ETag", "Content-Disposition", "Last-Modified"):
        assert private not in bare.headers, private
    assert (await client.get(url)).status == 401, "a body always needs the token"
    assert (await client.head("/download/no-such-job")).status == 401
    assert (await client.head(url, headers=auth("wrong-token-0123456789"))).status == 401
    full = await client.head(url, headers=auth())
    assert full.headers["X-File-Checksum"] == job["checksum"] and "ETag" in full.headers


async def test_unfinished_jobs_answer_a_bare_head_like_unknown_ones(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    await wait_status(client, job_id, "optimizing")
    assert (await client.head(f"/download/{job_id}")).status == 401
    await client.delete(f"/cancel-job/{job_id}", headers=auth())


async def test_if_range_with_entity_tags(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hevc"), "completed")
    url, size = f"/download/{job['id']}", job["size"]
    etag = (await client.head(url, headers=auth())).headers["ETag"]
    ranged = {**auth(), "Range": "bytes=0-9"}
    same = await client.get(url, headers={**ranged, "If-Range": etag})
    assert (same.status, len(await same.read())) == (206, 10)
    for stale in ('"0-0"', f"W/{etag}", "not a validator"):
        other = await client.get(url, headers={**ranged, "If-Range": stale})
        assert other.status == 200, stale
        assert len(await other.read()) == size, "a validator that does not match: whole file"


async def test_a_user_cannot_dismiss_or_start_anothers_job(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    failed = await wait_status(client, await post_job(client, env, "corrupt"), "failed")
    other = {"Authorization": "bob-token-0123456789"}
    assert (await client.delete(f"/cancel-job/{failed['id']}", headers=other)).status == 404
    assert (await client.post(f"/start-job/{failed['id']}", headers=other)).status == 404
    listed = await (await client.get("/all-jobs?deviceId=phone-1", headers=auth(ALICE))).json()
    assert [j["id"] for j in listed] == [failed["id"]]
    assert (await client.get(f"/job-status/{failed['id']}", headers=auth(ADMIN))).status == 200
