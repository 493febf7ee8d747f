"""The phone's whole flow against the real app, real ffmpeg and the stand-in Jellyfin."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import av
import pytest
from conftest import ADMIN, ALICE, BOB, Env, StartApp, auth, post_job, wait_status


async def test_client_flow_transcodes_hevc_and_downloads_in_two_ranges(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    job_id = await post_job(client, env, "hevc")

    seen = []
    while True:  # the phone polls all-jobs for its device
        resp = await client.get("/all-jobs", params={"deviceId": "phone-1"}, headers=auth())
        jobs = await resp.json()
        assert [j["id"] for j in jobs] == [job_id]
        seen.append(jobs[0]["progress"])
        if jobs[0]["status"] == "completed":
            break
        assert jobs[0]["status"] in ("queued", "optimizing")
    assert seen == sorted(seen), "progress must never go back"
    job = jobs[0]
    assert job["progress"] == 100
    assert job["item"] == {"Id": "hevc", "Name": "Film hevc"}
    assert "REDACTED" in job["inputUrl"] and ALICE not in job["inputUrl"]
    assert (job["backend"], job["encoder"], job["decoder"]) == ("software", "libx264", "software")
    assert "fallbacks" not in job

    head = await client.head(f"/download/{job_id}", headers=auth())
    total = int(head.headers["X-File-Size"])
    assert head.headers["Content-Type"] == "video/mp4"
    assert int(head.headers["Content-Length"]) == total == job["size"]
    first = await client.get(f"/download/{job_id}", headers={**auth(), "Range": "bytes=0-999"})
    assert first.status == 206
    assert first.headers["Content-Range"] == f"bytes 0-999/{total}"
    rest = await client.get(f"/download/{job_id}", headers={**auth(), "Range": "bytes=1000-"})
    assert rest.status == 206
    data = await first.read() + await rest.read()
    assert hashlib.sha256(data).hexdigest() == head.headers["X-File-Checksum"] == job["checksum"]

    out = Path(env.config.cache_dir) / "downloaded.mp4"
    out.write_bytes(data)
    with av.open(str(out)) as box:
        video, audio = box.streams.video[0], box.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"  # 10-bit source, 8-bit output
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.channels == 2  # 5.1 folded to stereo

    resp = await client.delete(f"/cancel-job/{job_id}", headers=auth())
    assert resp.status == 200
    await wait_status(client, job_id, "ready-for-removal", token=ALICE)
    listed = await (await client.get("/all-jobs?deviceId=phone-1", headers=auth())).json()
    assert listed == []  # collected jobs leave the device's list


async def test_fitting_source_is_stream_copied(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "h264"), "completed")
    assert job["backend"] == "copy"
    with av.open(job["outputPath"]) as out, av.open(str(env.jellyfin.items["h264"])) as src:
        assert out.streams.video[0].codec_context.name == "h264"
        assert out.streams.video[0].frames == src.streams.video[0].frames


async def test_audio_stream_index_from_the_url_is_honoured(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    body = {"url": env.url("two-audio", AudioStreamIndex="2"), "deviceId": "d", "itemId": "two"}
    resp = await client.post("/optimize-version", json=body, headers=auth())
    job = await wait_status(client, (await resp.json())["id"], "completed")
    with av.open(job["outputPath"]) as out:
        assert len(out.streams.audio) == 1
        audio = out.streams.audio[0].codec_context
        assert (audio.name, audio.channels) == ("aac", 2)  # the 5.1 AC-3 track, re-encoded


async def test_repeated_post_answers_with_the_same_job(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    first = await post_job(client, env, "h264")
    assert await post_job(client, env, "h264") == first
    assert await post_job(client, env, "h264", device="phone-2") != first
    assert await post_job(client, env, "h264", token=BOB) != first
    await wait_status(client, first, "completed")
    assert await post_job(client, env, "h264") == first
    await client.delete(f"/cancel-job/{first}", headers=auth())
    # collected but still within the grace period: the retry gets the same file back
    assert await post_job(client, env, "h264") == first
    await wait_status(client, first, "completed")


async def test_failed_jobs_do_not_stall_the_queue(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    corrupt = await post_job(client, env, "corrupt")
    missing = await post_job(client, env, "no-such-item")
    good = await post_job(client, env, "h264")
    failed = await wait_status(client, corrupt, "failed")
    assert "cannot read the source" in failed["error"]
    gone = await wait_status(client, missing, "failed")
    assert "404" in gone["error"] or "Not Found" in gone["error"]
    assert ALICE not in gone["error"]
    assert (await wait_status(client, good, "completed"))["progress"] == 100


async def test_cancel_during_a_transcode_stops_ffmpeg_and_removes_the_partial(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    running = await wait_status(client, job_id, "optimizing", min_progress=0)
    resp = await client.delete(f"/cancel-job/{job_id}", headers=auth())
    assert resp.status == 200
    job = await (await client.get(f"/job-status/{job_id}", headers=auth())).json()
    assert job["status"] == "cancelled"
    cache = Path(env.config.cache_dir)
    assert list(cache.iterdir()) == [], "partial output left behind"
    assert running["progress"] <= job["progress"] < 100
    again = await client.delete(f"/cancel-job/{job_id}", headers=auth())
    assert again.status == 200  # cancelling twice is fine
    assert (await client.get(f"/download/{job_id}", headers=auth())).status == 404


async def test_start_job_puts_a_job_first_and_never_beside_a_full_device(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()  # one slot
    blocker = await post_job(client, env, "long")
    await wait_status(client, blocker, "optimizing")
    earlier = await post_job(client, env, "hevc", device="phone-2")
    asked = await post_job(client, env, "h264", device="phone-3")
    resp = await client.post(f"/start-job/{asked}", headers=auth())
    assert resp.status == 200, await resp.text()
    assert "first in the queue" in (await resp.json())["message"]
    await asyncio.sleep(0.3)
    held = await wait_status(client, asked, "queued")
    assert held["waitReason"] == "all 1 job slots are in use" and "startRequestedAt" in held
    assert (await client.post(f"/start-job/{asked}", headers=auth())).status == 200
    await client.delete(f"/cancel-job/{blocker}", headers=auth())
    first, second = [await wait_status(client, j, "completed") for j in (asked, earlier)]
    assert first["startedAt"] < second["startedAt"], "the asked-for job went first"
    again = await client.post(f"/start-job/{asked}", headers=auth())
    assert again.status == 400
    assert "only a queued job" in (await again.json())["message"]


async def test_start_job_on_every_job_runs_one_at_a_time(env: Env, start_app: StartApp) -> None:
    """A new user's habit: queue a season and press start on each episode."""
    client = await start_app(max_concurrent_jobs=1, max_cached_per_user=0)
    for n in range(8):
        env.jellyfin.items[f"e{n}"] = env.jellyfin.items["hevc"]
    jobs = [await post_job(client, env, f"e{n}", device=f"d{n}") for n in range(8)]
    for job_id in jobs:
        assert (await client.post(f"/start-job/{job_id}", headers=auth())).status in (200, 400)
    most = 0
    while True:
        listing = await (await client.get("/all-jobs", headers=auth())).json()
        most = max(most, sum(j["status"] == "optimizing" for j in listing))
        if all(j["status"] == "completed" for j in listing):
            break
        assert not any(j["status"] == "failed" for j in listing), listing
        await asyncio.sleep(0.02)
    assert most == 1, f"{most} transcodes ran at once"


async def test_max_cached_per_user_holds_jobs_until_downloads_are_collected(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app(max_cached_per_user=1)
    first = await post_job(client, env, "h264")
    await wait_status(client, first, "completed")
    second = await post_job(client, env, "hevc")
    held = await wait_status(client, second, "pending downloads limit")
    assert held["progress"] == 0
    other_device = await post_job(client, env, "hevc", device="tablet")
    await wait_status(client, other_device, "completed")
    await client.delete(f"/cancel-job/{first}", headers=auth())  # the phone collected it
    await wait_status(client, second, "completed")


async def test_round_robin_across_devices(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    blocker = await post_job(client, env, "long", device="season-binger")
    await wait_status(client, blocker, "optimizing")
    season = [
        await post_job(client, env, item, device="season-binger")
        for item in ("h264", "hevc", "two-audio")
    ]
    # another title: not the season's h264 output (that one would be shared, never run)
    single = await post_job(client, env, "h264", device="one-film", name="Single")
    await client.delete(f"/cancel-job/{blocker}", headers=auth())
    jobs = [await wait_status(client, j, "completed") for j in [single, *season]]
    order = [j["itemId"] + "@" + j["deviceId"] for j in sorted(jobs, key=lambda j: j["startedAt"])]
    # the device that was just served waits for the other device's single film
    assert order == [
        "h264@one-film",
        "h264@season-binger",
        "hevc@season-binger",
        "two-audio@season-binger",
    ]


async def test_delete_cache_is_admin_only_and_leaves_the_list_consistent(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    done = await post_job(client, env, "h264")
    await wait_status(client, done, "completed")
    running = await post_job(client, env, "long")
    await wait_status(client, running, "optimizing")
    resp = await client.delete("/delete-cache", headers=auth(ALICE))
    assert resp.status == 403
    assert (await resp.json())["error"] == "Forbidden"
    resp = await client.delete("/delete-cache", headers=auth(ADMIN))
    assert resp.status == 200
    jobs = await (await client.get("/all-jobs", headers=auth(ADMIN))).json()
    assert [j["status"] for j in jobs] == ["cancelled"]
    assert list(Path(env.config.cache_dir).iterdir()) == []
    stats = await (await client.get("/statistics", headers=auth())).json()
    assert stats["cacheSize"] == "0 B" and stats["activeJobs"] == 0


async def test_a_stalled_source_fails_the_job_with_the_reason(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.hang.add("long")
    client = await start_app(stall_timeout=1.0)
    stalled = await post_job(client, env, "long")
    after = await post_job(client, env, "h264", device="other")
    job = await wait_status(client, stalled, "failed")
    assert "no progress for 1 s" in job["error"]
    assert list(Path(env.config.cache_dir).glob(f"{stalled}*")) == []
    await wait_status(client, after, "completed")


async def test_a_source_cut_short_does_not_complete(env: Env, start_app: StartApp) -> None:
    """ffmpeg takes a dropped connection for the end of the film and exits 0."""
    env.jellyfin.cut.add("long")
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "long"), "failed")
    assert "the output lasts" in job["error"], job["error"]  # caught by the verification
    assert list(Path(env.config.cache_dir).iterdir()) == []


async def test_hdr_is_tone_mapped_to_sdr(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    job = await wait_status(client, await post_job(client, env, "hdr"), "completed")
    with av.open(job["outputPath"]) as out:
        video = out.streams.video[0].codec_context
        assert (video.name, video.pix_fmt) == ("h264", "yuv420p")
        assert video.color_trc == 1  # BT.709, not PQ (16)


async def test_cache_limit_holds_with_several_slots(env: Env, start_app: StartApp) -> None:
    client = await start_app(max_cached_per_user=1, max_concurrent_jobs=3)
    jobs = [await post_job(client, env, item) for item in ("h264", "hevc", "two-audio")]
    await wait_status(client, jobs[0], "completed")
    states = [(await wait_status(client, j, "pending downloads limit"))["status"] for j in jobs[1:]]
    assert states == ["pending downloads limit"] * 2


async def test_concurrent_start_job_runs_it_once(
    env: Env, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    env.jellyfin.trickle.add("long")
    client = await start_app()
    blocker = await post_job(client, env, "long")
    await wait_status(client, blocker, "optimizing")
    waiting = await post_job(client, env, "h264", device="other")
    answers = await asyncio.gather(
        *(client.post(f"/start-job/{waiting}", headers=auth()) for _ in range(5))
    )
    assert [r.status for r in answers] == [200] * 5
    await client.delete(f"/cancel-job/{blocker}", headers=auth())
    await wait_status(client, waiting, "completed")
    launches = [r for r in caplog.records if r.getMessage().startswith(f"job {waiting} placed")]
    assert len(launches) == 1


async def test_active_jobs_are_counted(env: Env, start_app: StartApp) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    job_id = await post_job(client, env, "long")
    await wait_status(client, job_id, "optimizing")
    stats = await (await client.get("/statistics", headers=auth())).json()
    assert (stats["activeJobs"], stats["totalTranscodes"], stats["uniqueDevices"]) == (1, 1, 1)
    await client.delete(f"/cancel-job/{job_id}", headers=auth())
