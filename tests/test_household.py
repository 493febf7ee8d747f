"""One encode per household: records of one output key (the same media source, profile and
track choice) share one file, made by one ffmpeg run; each user keeps their own record
(through the real app, real ffmpeg)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import ADMIN, ALICE, BOB, USERS, Env, StartApp, auth, post_job, wait_status

from optimized_versions.jobs.models import RULES_DEVICE, JobStatus, Principal
from optimized_versions.jobs.store import JobStore
from optimized_versions.keys import JANITOR, SERVICE, STORE
from optimized_versions.waits import Hold, Why

SAME_COPY = str(Hold.of(Why.SAME_COPY))


async def _status(client: Any, job_id: str, token: str = ADMIN) -> dict[str, Any]:
    resp = await client.get(f"/job-status/{job_id}", headers=auth(token))
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def _download(client: Any, job_id: str, token: str) -> tuple[bytes, str]:
    resp = await client.get(f"/download/{job_id}", headers=auth(token))
    assert resp.status == 200, await resp.text()
    return await resp.read(), resp.headers["X-File-Checksum"]


async def test_two_users_asking_for_the_same_film_share_one_encode(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    env.jellyfin.trickle.add("h264")  # still being made when BOB asks
    client = await start_app()
    alice = await post_job(client, env, "h264", ALICE, device="alice-phone")
    bob = await post_job(client, env, "h264", BOB, device="bob-phone")
    assert alice != bob
    waiting = await _status(client, bob, BOB)
    assert waiting["status"] == "queued" and waiting["waitReason"] == SAME_COPY
    done = {jid: await wait_status(client, jid, "completed") for jid in (alice, bob)}
    assert len(runs) == 1, "one ffmpeg run for both records"
    assert done[bob].get("startedAt") is None  # BOB's record never ran
    a_bytes, a_sum = await _download(client, alice, ALICE)
    b_bytes, b_sum = await _download(client, bob, BOB)
    assert a_bytes == b_bytes and a_sum == b_sum == done[alice]["checksum"] == done[bob]["checksum"]
    assert done[alice]["outputPath"] == done[bob]["outputPath"]
    assert len([p for p in env.config.cache_dir.iterdir() if p.suffix == ".mp4"]) == 1
    # each user sees only their own record; the other's is not found
    for token, mine, theirs in ((ALICE, alice, bob), (BOB, bob, alice)):
        listed = await (await client.get("/all-jobs", headers=auth(token))).json()
        assert [j["id"] for j in listed] == [mine]
        assert (await client.get(f"/job-status/{theirs}", headers=auth(token))).status == 404
        assert (await client.get(f"/download/{theirs}", headers=auth(token))).status == 404
        assert (await client.delete(f"/cancel-job/{theirs}", headers=auth(token))).status == 404
    everyone = await (await client.get("/all-jobs", headers=auth(ADMIN))).json()
    assert {j["id"] for j in everyone} == {alice, bob}
    # a rule job (the rules submit through the service, on their own device) takes it too
    body = {
        "url": env.url("h264", BOB),
        "deviceId": RULES_DEVICE,
        "itemId": "h264",
        "item": {"Id": "h264", "Name": "Film h264"},
    }
    bob_user = Principal(USERS[BOB]["Id"], USERS[BOB]["Name"], False)
    rule = await client.app[SERVICE].submit(bob_user, BOB, body)
    assert (await _status(client, rule, BOB))["status"] == "completed"
    assert len(runs) == 1


async def test_a_different_profile_or_audio_track_is_another_encode(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    client = await start_app()
    ids = [
        await post_job(client, env, "h264", ALICE),
        await post_job(client, env, "h264", BOB),  # the same: shared
        await post_job(client, env, "h264", BOB, device="tablet", profile="h264-720p"),
    ]
    two = [
        ("two-audio", ALICE, {"AudioStreamIndex": "1"}),
        ("two-audio", BOB, {"AudioStreamIndex": "1"}),  # the same choice: shared
        ("two-audio", BOB, {"AudioStreamIndex": "2"}),
    ]
    for n, (item, token, query) in enumerate(two):
        body = {
            "url": env.url(item, token, **query),
            "deviceId": f"d{n}",
            "itemId": item,
            "item": {"Id": item, "Name": f"Film {item}"},
        }
        resp = await client.post("/optimize-version", json=body, headers=auth(token))
        assert resp.status == 201
        ids.append((await resp.json())["id"])
    done = [await wait_status(client, jid, "completed") for jid in ids]
    assert len(runs) == 4, "1080p, 720p, audio 1, audio 2"
    paths = [job["outputPath"] for job in done]
    assert paths[0] == paths[1] != paths[2]
    assert paths[3] == paths[4] != paths[5]
    assert len(set(paths)) == 4


async def test_a_copy_already_made_is_completed_at_once(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    client = await start_app()
    first = await wait_status(client, await post_job(client, env, "h264", ALICE), "completed")
    bob = await post_job(client, env, "h264", BOB, device="bob-phone")
    at_once = await _status(client, bob, BOB)
    assert at_once["status"] == "completed" and at_once["progress"] == 100
    assert at_once["checksum"] == first["checksum"] and at_once["size"] == first["size"]
    assert len(runs) == 1
    a_bytes, _ = await _download(client, first["id"], ALICE)
    b_bytes, b_sum = await _download(client, bob, BOB)
    assert a_bytes == b_bytes and b_sum == first["checksum"]
    # a phone's URL that differs by its host and token only is the same output
    other_host = env.url("h264", BOB).replace("://", "://phone-side.", 1)
    body = {"url": other_host, "deviceId": "bob-tablet", "itemId": "h264", "item": {}}
    body["item"] = {"Id": "h264", "Name": "Film h264"}
    resp = await client.post("/optimize-version", json=body, headers=auth(BOB))
    assert (await _status(client, (await resp.json())["id"], BOB))["status"] == "completed"
    assert len(runs) == 1


async def test_an_item_jellyfin_hides_from_a_user_is_not_shared_with_them(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    client = await start_app()
    first = await wait_status(client, await post_job(client, env, "h264", ALICE), "completed")
    seen = await post_job(client, env, "h264", ADMIN)  # Jellyfin lets the admin see it
    assert (await _status(client, seen))["outputPath"] == first["outputPath"]
    assert len(runs) == 1
    env.jellyfin.hidden.add("h264")
    bob = await post_job(client, env, "h264", BOB)
    assert any(path.endswith("/Items/h264") for path in env.jellyfin.item_requests)
    assert (await _status(client, bob, BOB))["status"] != "completed"  # no copy for BOB
    await wait_status(client, bob, "completed")  # his own run, with his own token
    assert len(runs) == 2


async def test_cancelling_the_waiting_record_leaves_the_other_made(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    env.jellyfin.trickle.add("h264")
    client = await start_app()
    alice = await post_job(client, env, "h264", ALICE)
    bob = await post_job(client, env, "h264", BOB)
    assert (await _status(client, bob, BOB))["waitReason"] == SAME_COPY
    assert (await client.delete(f"/cancel-job/{bob}", headers=auth(BOB))).status == 200
    done = await wait_status(client, alice, "completed")
    assert (await _status(client, bob, BOB))["status"] == "cancelled"
    data, checksum = await _download(client, alice, ALICE)
    assert checksum == done["checksum"] and len(data) == done["size"]
    assert len(runs) == 1


async def test_cancelling_the_record_being_made_hands_the_run_to_the_other(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    env.jellyfin.trickle.add("long")
    client = await start_app()
    alice = await post_job(client, env, "long", ALICE)
    bob = await post_job(client, env, "long", BOB)
    await wait_status(client, alice, "optimizing", min_progress=0)
    assert (await _status(client, bob, BOB))["waitReason"] == SAME_COPY
    assert (await client.delete(f"/cancel-job/{alice}", headers=auth(ALICE))).status == 200
    env.jellyfin.trickle.clear()
    done = await wait_status(client, bob, "completed", timeout=120)
    assert (await _status(client, alice))["status"] == "cancelled"
    data, checksum = await _download(client, bob, BOB)
    assert checksum == done["checksum"] and len(data) == done["size"]
    assert done["startedAt"], "BOB's record made it"
    assert len(runs) == 2  # the cancelled run's work is lost (docs/jobs.md)


async def test_removing_one_record_keeps_the_file_for_the_other(
    env: Env, start_app: StartApp, runs: list[list[str]]
) -> None:
    client = await start_app(removal_grace=0)
    alice = await wait_status(client, await post_job(client, env, "h264", ALICE), "completed")
    bob = await wait_status(client, await post_job(client, env, "h264", BOB), "completed")
    carol = await wait_status(client, await post_job(client, env, "h264", ADMIN), "completed")
    output = Path(alice["outputPath"])
    assert bob["outputPath"] == carol["outputPath"] == str(output) and len(runs) == 1
    janitor = client.app[JANITOR]
    await client.delete(f"/cancel-job/{alice['id']}", headers=auth(ALICE))  # "I have it"
    assert janitor.sweep() == 1
    assert output.exists(), "BOB's and the admin's records still hold it"
    assert (await client.get(f"/download/{alice['id']}", headers=auth(ALICE))).status == 404
    data, checksum = await _download(client, bob["id"], BOB)
    assert checksum == bob["checksum"] and len(data) == bob["size"]
    await client.delete(f"/cancel-job/{bob['id']}", headers=auth(BOB))
    assert janitor.sweep() == 1 and output.exists()
    await client.delete(f"/cancel-job/{carol['id']}", headers=auth(ADMIN))
    assert janitor.sweep() == 1
    assert not output.exists(), "the last record that held it is gone: so is the file"


async def test_delete_cache_removes_a_shared_file_and_every_record_of_it(
    env: Env, start_app: StartApp
) -> None:
    client = await start_app()
    alice = await wait_status(client, await post_job(client, env, "h264", ALICE), "completed")
    bob = await wait_status(client, await post_job(client, env, "h264", BOB), "completed")
    assert bob["outputPath"] == alice["outputPath"]
    assert (await client.delete("/delete-cache", headers=auth(ADMIN))).status == 200
    assert not Path(alice["outputPath"]).exists()
    assert await (await client.get("/all-jobs", headers=auth(ADMIN))).json() == []


async def test_a_restart_while_a_record_waits_on_a_run_ends_with_both_completed(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    first = await start_app()
    alice = await post_job(first, env, "long", ALICE)
    bob = await post_job(first, env, "long", BOB)
    await wait_status(first, alice, "optimizing", min_progress=0)
    await first.close()  # the run goes back to the queue; BOB's record still waits on it
    env.jellyfin.trickle.clear()
    second = await start_app()
    done = [await wait_status(second, jid, "completed", timeout=120) for jid in (alice, bob)]
    assert done[0]["outputPath"] == done[1]["outputPath"]
    assert done[0]["checksum"] == done[1]["checksum"]
    assert done[1].get("startedAt") is None
    for jid, token in ((alice, ALICE), (bob, BOB)):
        _, checksum = await _download(second, jid, token)
        assert checksum == done[0]["checksum"]


async def test_a_record_whose_maker_vanished_runs_after_a_restart(
    env: Env, start_app: StartApp
) -> None:
    env.jellyfin.trickle.add("long")
    first = await start_app()
    alice = await post_job(first, env, "long", ALICE)
    bob = await post_job(first, env, "long", BOB)
    await wait_status(first, alice, "optimizing", min_progress=0)
    await first.close()
    store = JobStore(env.config.data_dir / "jobs.sqlite3", time.time)
    waiting = store.get(bob)
    assert waiting is not None and waiting.maker_id == alice
    store.delete(alice)  # the maker's record is gone (a store edited by hand, a lost row)
    store.close()
    env.jellyfin.trickle.clear()
    second = await start_app()
    done = await wait_status(second, bob, "completed", timeout=120)
    assert done["startedAt"], "BOB's record made its output itself"
    assert (await second.get(f"/job-status/{alice}", headers=auth(ADMIN))).status == 404
    job = second.app[STORE].get(bob)
    assert job is not None and job.status is JobStatus.COMPLETED and job.maker_id is None
