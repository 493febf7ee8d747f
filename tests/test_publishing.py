"""Rules make copies ahead of time and publish them into Jellyfin as versions of their items,
against a Jellyfin stand-in that scans real folders with Jellyfin's naming rules (10.11 and
12), with real ffmpeg, real files, and the originals hashed before and after."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from conftest import ALICE, BOB, USERS, Env, Media, StartApp, post_job, wait_status
from jellyfin_double import JellyfinDouble

from optimized_versions.config import RuleSpec
from optimized_versions.jobs.models import RULES_DEVICE, JobStatus, Principal
from optimized_versions.keys import LEDGER, RULES, SERVICE, STORE
from optimized_versions.publish.ledger import Published

TINY = """\
name: tiny
description: H.264 at 160 pixels wide (narrower than the 320-wide sources)
container: mp4
video: {codec: h264, max_width: 160, max_height: 120, max_bitrate: 400000, quality: 30,
        preset: ultrafast}
audio: {codec: aac, channels: 2, bitrate: 64000}
"""
Client = TestClient[web.Request, web.Application]


@dataclass
class Household:
    jf: JellyfinDouble
    url: str
    key: str
    media: Path
    alice: str
    bob: str
    films: str
    shows: str


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["10.11.11", "12.0.0"])
async def household(
    request: pytest.FixtureRequest, media: Media, tmp_path: Path, aiohttp_server: Any
) -> Household:
    root = tmp_path / "media"
    for name in ("Film (2020)/Film (2020).mp4", "Mixed/Old (2019).mp4", "Mixed/New (2021).mp4"):
        (root / "films" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media.h264, root / "films" / name)
    for n in range(1, 5):
        episode = root / "shows" / "Show" / "Season 1" / f"Show S01E0{n}.mp4"
        episode.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media.h264, episode)
    jf = JellyfinDouble(version=request.param)
    films = jf.add_library("Films", "movies", [root / "films"])
    shows = jf.add_library("Shows", "tvshows", [root / "shows"])
    alice = jf.add_user("alice", token="tok-alice")
    bob = jf.add_user("bob", token="tok-bob")
    key = jf.add_api_key("ovs")
    jf.scan()
    server = await aiohttp_server(jf.app(), access_log=None)
    return Household(jf, str(server.make_url("")).rstrip("/"), key, root, alice, bob, films, shows)


async def start(
    env: Env, start_app: StartApp, house: Household, tmp_path: Path, **over: Any
) -> Client:
    profiles = tmp_path / "user"
    (profiles / "profiles").mkdir(parents=True, exist_ok=True)
    (profiles / "profiles" / "tiny.yaml").write_text(TINY)
    settings: dict[str, Any] = {
        "jellyfin_url": house.url,
        "jellyfin_api_key": house.key,
        "publish": "alongside",
        "path_map": f"{house.media}={house.media}",
        "profiles_dir": profiles,
        "default_profile": "tiny",
        "rules_interval": 3600.0,
        "watched_grace": 0.0,
    }
    return await start_app(**(settings | over))


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def published(client: Client, item_id: str, profile: str = "tiny") -> Published:
    """Evaluate once, then wait until the item's copy is published (or failed/refused)."""
    ledger = client.app[LEDGER]

    async def done() -> bool:
        row = ledger.get(item_id, profile)
        return row is not None and row.state in ("published", "failed", "refused")

    await until(done, f"{item_id} published", 90)
    row = ledger.get(item_id, profile)
    assert row is not None
    return row


async def jf_get(house: Household, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": f'MediaBrowser Token="{token or house.key}"'}
    async with ClientSession() as session, session.get(house.url + path, headers=headers) as r:
        assert r.status == 200, (path, r.status)
        return await r.json()


def item_by_path(house: Household, path: Path) -> str:
    return next(i.id for i in house.jf.items.values() if i.path == path and i.kind != "Video")


async def test_a_latest_film_rule_publishes_the_film_beside_its_original(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    original = house.media / "films" / "Film (2020)" / "Film (2020).mp4"
    before = sha(original)
    film = item_by_path(house, original)
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    # the newest film: make Film (2020) the newest of the library
    house.jf.items[film].created = time.time() + 10
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    await client.app[RULES].evaluate()
    row = await published(client, film)
    assert row.state == "published", row.reason
    copy = original.with_name("Film (2020) - Optimized.mp4")
    assert row.path == str(copy) and copy.is_file()
    assert sha(copy) == row.sha256
    assert sha(original) == before  # the original's bytes are as they were
    # the film keeps its id; the copy is its second version, listed with streams
    item = await jf_get(house, f"/Items/{film}?userId={house.alice}&fields=MediaSources,Path")
    assert item["Path"] == str(original)
    paths = [s["Path"] for s in item["MediaSources"]]
    assert paths == [str(original), str(copy)]
    assert row.version_id == item["MediaSources"][1]["Id"]
    movies = await jf_get(
        house, f"/Items?userId={house.alice}&recursive=true&includeItemTypes=Movie"
    )
    assert [m["Name"] for m in movies["Items"]].count("Film (2020)") == 1  # no duplicate
    # what the current Streamyfin downloads: the chosen version's id to /Items/{id}/Download
    async with (
        ClientSession() as session,
        session.get(
            f"{house.url}/Items/{row.version_id}/Download",
            headers={"Authorization": 'MediaBrowser Token="tok-alice"'},
        ) as resp,
    ):
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).hexdigest() == row.sha256
    # the rule job was collected once its copy was in Jellyfin
    jobs = client.app[STORE].jobs(device_id=RULES_DEVICE)
    assert [j.status for j in jobs] == [JobStatus.READY_FOR_REMOVAL]


async def test_a_film_in_a_mixed_folder_is_refused_with_the_reason_and_not_encoded(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    mixed = house.media / "films" / "Mixed"
    listing = sorted(p.name for p in mixed.iterdir())
    new = item_by_path(house, mixed / "New (2021).mp4")
    house.jf.items[new].created = time.time() + 10
    rule = RuleSpec(user="alice", kind="latest", count=1)
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    await client.app[RULES].evaluate()
    row = await published(client, new)
    assert row.state == "refused"
    assert "is not named after its folder" in str(row.reason)
    assert sorted(p.name for p in mixed.iterdir()) == listing  # nothing written
    assert client.app[STORE].jobs(device_id=RULES_DEVICE) == []  # and nothing encoded


async def test_next_two_episodes_are_published_as_versions_and_one_goes_once_watched(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    season = house.media / "shows" / "Show" / "Season 1"
    ids = [item_by_path(house, season / f"Show S01E0{n}.mp4") for n in range(1, 5)]
    originals = {n: sha(season / f"Show S01E0{n}.mp4") for n in range(1, 5)}
    house.jf.mark_played(house.alice, ids[0])  # alice is in the middle of the series
    rule = RuleSpec(user="alice", kind="next-up", count=2, library="Shows")
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    engine, ledger = client.app[RULES], client.app[LEDGER]
    await engine.evaluate()
    rows = [await published(client, ids[1]), await published(client, ids[2])]
    assert [r.state for r in rows] == ["published", "published"], [r.reason for r in rows]
    assert ledger.get(ids[3], "tiny") is None  # exactly those two
    assert rows[0].method == ("name" if house.jf.new else "merge")
    episodes = await jf_get(house, f"/Shows/{_series(house)}/Episodes?userId={house.alice}")
    assert [e["Id"] for e in episodes["Items"]] == ids  # no duplicate episode anywhere
    for n, row in zip((2, 3), rows, strict=True):
        item = await jf_get(house, f"/Items/{ids[n - 1]}?userId={house.alice}&fields=MediaSources")
        assert [s["Path"] for s in item["MediaSources"]] == [
            str(season / f"Show S01E0{n}.mp4"),
            row.path,
        ]
    # alice watches episode 2: its copy goes (the grace is 0 here), episode 4 comes in
    house.jf.mark_played(house.alice, ids[1])
    await engine.evaluate()
    assert ledger.get(ids[1], "tiny") is None
    assert not Path(str(rows[0].path)).exists()
    assert Path(str(rows[1].path)).exists()
    assert (await published(client, ids[3])).state == "published"
    assert {n: sha(season / f"Show S01E0{n}.mp4") for n in range(1, 5)} == originals


def _series(house: Household) -> str:
    return next(i.id for i in house.jf.items.values() if i.kind == "Series")


async def test_a_phone_cannot_pass_for_the_rules(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    body = {"url": env.url("h264"), "deviceId": RULES_DEVICE, "itemId": "h264"}
    resp = await client.post("/optimize-version", json=body, headers={"Authorization": ALICE})
    assert resp.status == 400
    assert "invalid deviceId: 'rules' is the server's own" in (await resp.json())["message"]


async def test_two_users_rules_for_one_film_make_one_encode_and_one_published_copy(
    env: Env,
    start_app: StartApp,
    household: Household,
    tmp_path: Path,
    runs: list[list[str]],
) -> None:
    house = household
    original = house.media / "films" / "Film (2020)" / "Film (2020).mp4"
    film = item_by_path(house, original)
    house.jf.items[film].created = time.time() + 10
    alices = RuleSpec(user="alice", kind="latest", count=1)
    client = await start(env, start_app, house, tmp_path, rules=(alices,))
    bobs = client.app[LEDGER].add_rule(
        "bob", user="bob", kind="latest", count=1, profile="tiny", keep="until-watched"
    )
    await client.app[RULES].evaluate()
    assert (await published(client, film)).state == "published"
    jobs = client.app[STORE].jobs(device_id=RULES_DEVICE)
    assert {j.owner_id for j in jobs} == {house.alice, house.bob}  # a record each
    assert len({j.output_path for j in jobs}) == 1
    assert len(runs) == 1  # one encode
    assert {j.status for j in jobs} == {JobStatus.READY_FOR_REMOVAL}  # both collected
    folder = sorted(p.name for p in original.parent.iterdir())
    assert folder == ["Film (2020) - Optimized.mp4", "Film (2020).mp4"]  # one copy
    # bob deletes his rule: alice's still holds the copy
    client.app[LEDGER].delete_rule(bobs)
    await client.app[RULES].evaluate()
    assert {h.user_id for h in client.app[LEDGER].holds()} == {house.alice}
    assert client.app[LEDGER].get(film, "tiny") is not None
    assert (original.parent / "Film (2020) - Optimized.mp4").is_file()


async def test_publish_library_puts_the_copy_in_its_own_folder_and_merges_it(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    original = house.media / "films" / "Film (2020)" / "Film (2020).mp4"
    film = item_by_path(house, original)
    house.jf.items[film].created = time.time() + 10
    shelf = house.media / "optimized"
    shelf.mkdir()
    house.jf.add_library("Optimized", "movies", [shelf])
    before = sorted(p.name for p in original.parent.iterdir())
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(
        env, start_app, house, tmp_path, rules=(rule,), publish="library", publish_dir=shelf
    )
    await client.app[RULES].evaluate()
    row = await published(client, film)
    assert row.state == "published", row.reason
    copy = shelf / "Film (2020)" / "Film (2020) - Optimized.mp4"
    assert (row.path, row.method) == (str(copy), "merge")
    assert sorted(p.name for p in original.parent.iterdir()) == before  # nothing beside it
    item = await jf_get(house, f"/Items/{film}?userId={house.alice}&fields=MediaSources,Path")
    assert item["Path"] == str(original)  # the original stays primary, its id unchanged
    assert sorted(s["Path"] for s in item["MediaSources"]) == sorted([str(original), str(copy)])
    movies = await jf_get(
        house, f"/Items?userId={house.alice}&recursive=true&includeItemTypes=Movie"
    )
    assert [m["Id"] for m in movies["Items"] if m["Name"] == "Film (2020)"] == [film]


async def test_a_file_of_the_copys_name_that_is_not_ours_is_never_overwritten(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    original = house.media / "films" / "Film (2020)" / "Film (2020).mp4"
    theirs = original.with_name("Film (2020) - Optimized.mp4")
    theirs.write_bytes(b"the user's own file")
    house.jf.scan()
    film = item_by_path(house, original)
    house.jf.items[film].created = time.time() + 10
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    await client.app[RULES].evaluate()
    row = await published(client, film)
    assert row.state == "failed"
    assert "could not write Film (2020) - Optimized.mp4" in str(row.reason)
    assert "File exists" in str(row.reason)
    assert theirs.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in original.parent.iterdir()) == [theirs.name, original.name]


@pytest.fixture
def small_mount(household: Household) -> Iterator[Path]:
    """The film's folder on a file system of its own, just big enough for the original (a
    real tmpfs: a full or read-only media folder as a NAS has them). Needs mount(8) as root,
    as the test machines have it."""
    folder = household.media / "films" / "Film (2020)"
    original = folder / "Film (2020).mp4"
    data = original.read_bytes()
    original.unlink()
    size = (len(data) // 4096 + 2) * 4096
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        original.write_bytes(data)
        household.jf.scan()
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("trouble", ["full", "read-only"])
async def test_a_full_or_read_only_media_folder_fails_the_publish_and_loses_nothing(
    env: Env,
    start_app: StartApp,
    household: Household,
    small_mount: Path,
    tmp_path: Path,
    trouble: str,
) -> None:
    house = household
    original = small_mount / "Film (2020).mp4"
    before = sha(original)
    if trouble == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    film = item_by_path(house, original)
    house.jf.items[film].created = time.time() + 10
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    await client.app[RULES].evaluate()
    row = await published(client, film)
    words = "No space left on device" if trouble == "full" else "Read-only file system"
    assert row.state == "failed" and words in str(row.reason), row.reason
    assert "could not write Film (2020) - Optimized.mp4 into" in str(row.reason)
    assert [p.name for p in small_mount.iterdir()] == [original.name]  # no part left behind
    assert sha(original) == before
    (job,) = client.app[STORE].jobs(device_id=RULES_DEVICE)
    assert job.status is JobStatus.COMPLETED  # the copy is kept in the cache, not lost
    assert sha(Path(job.output_path)) == job.checksum


async def test_rules_wait_while_jellyfin_transcodes_and_at_the_storage_cap(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    film = item_by_path(house, house.media / "films" / "Film (2020)" / "Film (2020).mp4")
    house.jf.items[film].created = time.time() + 10
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(env, start_app, house, tmp_path, rules=(rule,), publish_max_bytes=1000)
    engine, store = client.app[RULES], client.app[STORE]
    house.jf.sessions.append(
        {"Id": "s1", "UserName": "bob", "TranscodingInfo": {"IsVideoDirect": False}}
    )
    await engine.evaluate()
    assert engine.status.waiting == "Jellyfin is transcoding for a viewer (RULES_WHILE_TRANSCODING)"
    assert store.jobs(device_id=RULES_DEVICE) == []
    house.jf.sessions.clear()  # the viewer stopped: now the cap (1000 bytes) is what stops it
    await engine.evaluate()
    assert str(engine.status.waiting).startswith("PUBLISH_MAX_BYTES: ")
    assert "would pass the cap of 1000" in str(engine.status.waiting)
    assert store.jobs(device_id=RULES_DEVICE) == []


async def test_favourites_and_playlist_rules_hold_their_items_and_keep_days_lets_go(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    season = house.media / "shows" / "Show" / "Season 1"
    film = item_by_path(house, house.media / "films" / "Film (2020)" / "Film (2020).mp4")
    third = item_by_path(house, season / "Show S01E03.mp4")
    house.jf.set_favourite(house.bob, film)
    house.jf.add_playlist("Trip", house.bob, [third])
    rules = (
        RuleSpec(user="bob", kind="favourites", count=5, keep=2),
        RuleSpec(user="bob", kind="playlist", playlist="Trip", count=5),
        RuleSpec(user="bob", kind="playlist", playlist="Nope"),
    )
    env.now = time.time()
    client = await start(env, start_app, house, tmp_path, rules=rules)
    engine, ledger = client.app[RULES], client.app[LEDGER]
    await engine.evaluate()
    assert {(h.rule, h.item_id) for h in ledger.holds()} == {("file:0", film), ("file:1", third)}
    assert engine.status.rules["file:2"].problem == "the user has no playlist named 'Nope'"
    assert (await published(client, film)).state == "published"
    assert (await published(client, third)).state == "published"
    env.now += 2 * 86400 + 1  # two days on: the favourite's copy goes, the playlist's stays
    await engine.evaluate()
    assert ledger.get(film, "tiny") is None and ledger.get(third, "tiny") is not None


async def test_a_publish_cut_short_by_a_restart_is_taken_back_and_done_again(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    original = house.media / "films" / "Film (2020)" / "Film (2020).mp4"
    film = item_by_path(house, original)
    house.jf.items[film].created = time.time() + 10
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    await client.app[RULES].evaluate()
    done = await published(client, film)
    # as a crash leaves it: the file linked, the row still "writing"
    client.app[LEDGER].note(film, "tiny", done.name, time.time(), state="writing")
    await client.close()
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    await until(lambda: _state(client, film, "published"), "published again after the restart", 60)
    again = client.app[LEDGER].get(film, "tiny")
    assert again is not None and again.path == done.path and again.sha256 == done.sha256
    item = await jf_get(house, f"/Items/{film}?userId={house.alice}&fields=MediaSources,Path")
    assert [s["Path"] for s in item["MediaSources"]] == [str(original), done.path]


async def _state(client: Client, item_id: str, state: str) -> bool:
    row = client.app[LEDGER].get(item_id, "tiny")
    return row is not None and row.state == state


async def test_taking_back_one_merged_copy_keeps_the_other_profiles_merged(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path
) -> None:
    house = household
    original = house.media / "films" / "Film (2020)" / "Film (2020).mp4"
    film = item_by_path(house, original)
    house.jf.items[film].created = time.time() + 10
    shelf = house.media / "optimized"
    shelf.mkdir()
    house.jf.add_library("Optimized", "movies", [shelf])
    (tmp_path / "user" / "profiles").mkdir(parents=True)
    (tmp_path / "user" / "profiles" / "tiny2.yaml").write_text(
        TINY.replace("name: tiny", "name: tiny2").replace("max_width: 160", "max_width: 128")
    )
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(
        env, start_app, house, tmp_path, rules=(rule,), publish="library", publish_dir=shelf
    )
    other = client.app[LEDGER].add_rule(
        "alice",
        user="alice",
        kind="latest",
        count=1,
        library="Films",
        profile="tiny2",
        keep="until-watched",
    )
    await client.app[RULES].evaluate()
    rows = [await published(client, film, "tiny"), await published(client, film, "tiny2")]
    assert [r.state for r in rows] == ["published", "published"], [r.reason for r in rows]
    ledger = client.app[LEDGER]
    ledger.delete_rule(other)
    await client.app[RULES].evaluate()
    assert ledger.get(film, "tiny2") is None and not Path(str(rows[1].path)).exists()
    item = await jf_get(house, f"/Items/{film}?userId={house.alice}&fields=MediaSources,Path")
    assert sorted(s["Path"] for s in item["MediaSources"]) == sorted(
        [str(original), str(rows[0].path)]
    )


async def test_jellyfins_webhook_has_the_rules_evaluated_at_once(
    env: Env, start_app: StartApp, household: Household, tmp_path: Path, media: Media
) -> None:
    house = household
    rule = RuleSpec(user="alice", kind="latest", count=1, library="Films")
    client = await start(env, start_app, house, tmp_path, rules=(rule,))
    ledger = client.app[LEDGER]
    for _ in range(2):  # the start's own pass is done too (it may have queued behind ours)
        await client.app[RULES].evaluate()
    fresh = house.media / "films" / "Fresh (2024)" / "Fresh (2024).mp4"
    fresh.parent.mkdir()
    shutil.copy(media.h264, fresh)
    house.jf.scan()
    new = item_by_path(house, fresh)
    house.jf.items[new].created = time.time() + 100
    event = {"NotificationType": "ItemAdded", "ItemId": new}

    async def held() -> bool:
        return any(h.item_id == new for h in ledger.holds())

    assert not await held()
    for headers, status in (
        ({}, 401),
        ({"Authorization": 'MediaBrowser Token="not-the-key-0123456789"'}, 401),
        ({"Authorization": f'MediaBrowser Token="{house.key}"'}, 202),
    ):
        resp = await client.post("/jellyfin/webhook", json=event, headers=headers)
        assert resp.status == status, await resp.text()

    # the next pass comes now, not in RULES_INTERVAL (an hour here)
    await until(held, "the webhook's pass held the new film", 20)


async def test_the_webhook_is_off_without_the_rules(env: Env, start_app: StartApp) -> None:
    client = await start_app()
    resp = await client.post("/jellyfin/webhook", json={})
    assert resp.status == 404
    assert "the webhook needs JELLYFIN_API_KEY and PUBLISH" in (await resp.json())["message"]


async def test_a_rule_job_waits_behind_a_persons_request(env: Env, start_app: StartApp) -> None:
    client = await start_app(max_concurrent_jobs=1)
    busy = await post_job(client, env, "long", ALICE)
    await wait_status(client, busy, "optimizing")
    bob = Principal(USERS[BOB]["Id"], USERS[BOB]["Name"], False)
    body = {"url": env.url("h264", BOB), "deviceId": RULES_DEVICE, "itemId": "h264"}
    rule_job = await client.app[SERVICE].submit(bob, BOB, body)  # asked first
    phone = await post_job(client, env, "hevc", BOB)  # asked after it
    await client.delete(f"/cancel-job/{busy}", headers={"Authorization": ALICE})
    await wait_status(client, phone, "completed")
    await wait_status(client, rule_job, "completed")
    store = client.app[STORE]
    first, then = store.get(phone), store.get(rule_job)
    assert first is not None and then is not None
    assert first.started_at is not None and then.started_at is not None
    assert first.started_at < then.started_at
