"""The Jellyfin double behaves as Jellyfin's code does (each test names the file it follows)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import jellyfin_naming as nm
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jellyfin_double import JellyfinDouble

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@dataclass(frozen=True)
class Clips:
    big: Path  # 320x240 H.264 in MKV
    small: Path  # 160x120 H.264 in MP4


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("clips")

    def make(name: str, size: str) -> Path:
        out = folder / name
        source = f"testsrc=size={size}:rate=10"
        args = ["-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", "1", "-c:v", "libx264"]
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), *args, "-pix_fmt", "yuv420p", str(out)],
            check=True,
            timeout=60,
        )
        return out

    return Clips(make("big.mkv", "320x240"), make("small.mp4", "160x120"))


def put(clip: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, target)
    return target


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f'MediaBrowser Client="test", Token="{token}"'}


def movies(jf: JellyfinDouble) -> list[Any]:
    return sorted((i for i in jf.items.values() if i.kind == "Movie"), key=lambda i: str(i.path))


def films(tmp_path: Path, clips: Clips, version: str) -> tuple[JellyfinDouble, str, Path]:
    root = tmp_path / "films"
    put(clips.big, root / "Film (2020)" / "Film (2020).mkv")
    jf = JellyfinDouble(version=version)
    lib = jf.add_library("Films", "movies", [root])
    jf.scan()
    return jf, lib, root


def test_ids_are_md5_of_type_and_path_printed_as_a_guid() -> None:
    # LibraryManager.GetNewItemIdInternal + BaseExtensions.GetMD5 (UTF-16LE, Guid "N")
    got = nm.item_id(nm.MOVIE, "/m/a.mkv")
    assert len(got) == 32 and got == got.lower()
    import hashlib
    import uuid

    raw = hashlib.md5((nm.MOVIE + "/m/a.mkv").encode("utf-16-le")).digest()
    assert got == uuid.UUID(bytes_le=raw).hex != raw.hex()


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
async def test_version_file_groups_keeps_id_and_order(
    tmp_path: Path, clips: Clips, version: str, aiohttp_client: MakeClient
) -> None:
    # VideoListResolver.GetVideosGroupedByVersion, MovieResolver.FindMovie, Video.cs
    # GetAllItemsForMediaSources, BaseItem.GetMediaSourceName
    jf, lib, root = films(tmp_path, clips, version)
    admin = jf.add_user("root", admin=True, token="tok-root")
    (movie,) = movies(jf)
    assert movie.name == "Film (2020)" and movie.year == 2020 and movie.parent_id == lib
    before = movie.id
    assert before == nm.item_id(nm.MOVIE, str(root / "Film (2020)" / "Film (2020).mkv"))
    put(clips.small, root / "Film (2020)" / "Film (2020) - Optimized.mp4")
    client = await aiohttp_client(jf.app())
    # a refresh of the movie itself does not see the new sibling (Video.RefreshedOwnedItems)
    r = await client.post(f"/Items/{before}/Refresh", headers=auth("tok-root"))
    assert r.status == 204
    await jf.settled()
    assert len(movies(jf)) == 1 and movies(jf)[0].local == []
    # the parent (the library: the movie's folder is not an item) does
    assert (await client.post(f"/Items/{lib}/Refresh", headers=auth("tok-root"))).status == 204
    await jf.settled()
    (movie,) = movies(jf)
    assert movie.id == before
    r = await client.get(f"/Items/{before}", params={"userId": admin}, headers=auth("tok-root"))
    body = await r.json()
    sources = body["MediaSources"]
    assert [s["Name"] for s in sources] == ["Film (2020)", "Optimized"]
    assert sources[0]["Id"] == before and sources[1]["Id"] == nm.item_id(
        nm.VIDEO, str(root / "Film (2020)" / "Film (2020) - Optimized.mp4")
    )
    assert sources[1]["MediaStreams"][0]["Width"] == 160  # probed at the refresh
    assert body["RunTimeTicks"] and sources[0]["Container"] == "mkv"
    # the version is no item of the listing (owned)
    r = await client.get("/Items", params={"recursive": "true"}, headers=auth("tok-root"))
    assert [i["Id"] for i in (await r.json())["Items"] if i["Type"] == "Movie"] == [before]


@pytest.mark.parametrize(
    ("version", "name", "grouped"),
    [
        ("10.11.11", "Film (2020).Optimized.mp4", False),
        ("12.0.0", "Film (2020).Optimized.mp4", True),
        ("12.0.0", "Film (2020)_Optimized.mp4", True),
        ("10.11.11", "Optimized Film (2020).mp4", False),
        ("12.0.0", "Optimized.mp4", False),
        ("10.11.11", "Film (2020) [Optimized].mp4", True),
        ("10.11.11", "Film (2021) - Optimized.mp4", False),  # another year
        ("10.11.11", "Film (2020) - Optimized-trailer.mp4", True),  # an extra: not counted
    ],
)
def test_ineligible_name_ungroups_the_folder(
    tmp_path: Path, clips: Clips, version: str, name: str, grouped: bool
) -> None:
    # VideoListResolver.IsEligibleForMultiVersion (12.0 adds '_' and '.'), HaveSameYear,
    # ExtraRuleResolver; MovieResolver.FindMovie: more than one movie -> a Folder item
    jf, lib, root = films(tmp_path, clips, version)
    put(clips.small, root / "Film (2020)" / name)
    jf.scan()
    found = movies(jf)
    if grouped:
        assert len(found) == 1 and found[0].parent_id == lib
    else:
        assert len(found) == 2
        folder = jf.items[found[0].parent_id]
        assert folder.kind == "Folder" and folder.parent_id == lib


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
def test_name_that_sorts_first_or_is_the_folder_name_becomes_primary(
    tmp_path: Path, clips: Clips, version: str
) -> None:
    # VideoListResolver: the exact folder name (ordinal) wins, else resolution tokens first
    root = tmp_path / "films"
    put(clips.big, root / "Film (2020)" / "Film (2020) - Original.mkv")
    jf = JellyfinDouble(version=version)
    jf.add_library("Films", "movies", [root])
    jf.scan()
    first = movies(jf)[0].id
    put(clips.small, root / "Film (2020)" / "Film (2020) - 720p.mp4")
    jf.scan()
    (movie,) = movies(jf)
    assert movie.id != first and movie.path.name == "Film (2020) - 720p.mp4"
    put(clips.small, root / "Film (2020)" / "Film (2020).mp4")
    jf.scan()
    (movie,) = movies(jf)
    assert movie.path.name == "Film (2020).mp4"
    put(clips.small, root / "Film (2020)" / "film (2020) - A.mp4")  # not the exact name
    jf.scan()
    assert movies(jf)[0].path.name == "Film (2020).mp4"


def test_loose_in_root_subfolder_and_dot_files(tmp_path: Path, clips: Clips) -> None:
    # MovieResolver.ResolveMultiple on the library root, FindMovie's other sub folders,
    # IgnorePatterns.cs ("**/.*", "**/sample.???")
    root = tmp_path / "films"
    put(clips.big, root / "Loose (2019).mkv")
    put(clips.small, root / "Loose (2019) - Optimized.mp4")
    put(clips.big, root / "Own (2020)" / "Own (2020).mkv")
    put(clips.small, root / "Own (2020)" / ".Own (2020) - Optimized.mp4.part")
    put(clips.small, root / "Own (2020)" / "sample.mkv")
    put(clips.small, root / ".hidden" / "Hidden (2000).mkv")
    put(clips.big, root / "Disc (2021)" / "Disc (2021).mkv")
    put(clips.small, root / "Disc (2021)" / "Disc (2021) - Optimized.mp4")
    put(clips.small, root / "Disc (2021)" / "bonus" / "Bonus (2021).mkv")
    jf = JellyfinDouble()
    lib = jf.add_library("Films", "movies", [root])
    jf.scan()
    names = sorted(m.path.name for m in movies(jf))
    assert names == [
        "Bonus (2021).mkv",
        "Disc (2021).mkv",
        "Loose (2019) - Optimized.mp4",
        "Loose (2019).mkv",
        "Own (2020).mkv",
    ]
    disc = next(m for m in movies(jf) if m.path.name == "Disc (2021).mkv")
    assert jf.items[disc.parent_id or ""].kind == "Folder"  # a Folder, not a movie folder
    own = next(m for m in movies(jf) if m.path.name == "Own (2020).mkv")
    assert own.parent_id == lib and own.local == []


@pytest.mark.parametrize(("version", "episodes"), [("10.11.11", 2), ("12.0.0", 1)])
def test_second_file_of_an_episode(
    tmp_path: Path, clips: Clips, version: str, episodes: int
) -> None:
    # MovieResolver.ResolveMultipleInternal (10.11: no multi-version for tvshows);
    # 12.0 VideoListResolver.GetEpisodesGroupedByVersion, BaseItem.GetCommonVersionPrefix
    root = tmp_path / "shows"
    put(clips.big, root / "Show" / "Season 1" / "Show S01E01.mkv")
    put(clips.small, root / "Show" / "Season 1" / "Show S01E01 - Optimized.mp4")
    put(clips.big, root / "Show" / "Season 1" / "Show S01E02.mkv")
    jf = JellyfinDouble(version=version)
    jf.add_library("Shows", "tvshows", [root])
    jf.scan()
    found = [i for i in jf.items.values() if i.kind == "Episode" and i.episode == 1]
    assert len(found) == episodes
    if episodes == 1:
        names = [s["Name"] for s in jf.media_sources(found[0])]
        assert names == ["Show S01E01", "Optimized"]
    season = jf.items[found[0].parent_id or ""]
    assert season.kind == "Season" and jf.items[season.parent_id or ""].kind == "Series"


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
async def test_merge_versions_and_unlink(
    tmp_path: Path, clips: Clips, version: str, aiohttp_client: MakeClient
) -> None:
    # VideosController.MergeVersions / DeleteAlternateSources, Video.GetAllItemsForMediaSources,
    # BaseItemRepository (10.11 groups by PresentationUniqueKey only with a user; 12.0 drops
    # PrimaryVersionId items)
    root = tmp_path / "films"
    put(clips.big, root / "Film (2020)" / "Film (2020).mkv")
    put(clips.small, root / "Copy" / "Film optimized.mp4")
    jf = JellyfinDouble(version=version)
    jf.add_library("Films", "movies", [root])
    alice = jf.add_user("alice", token="tok-alice")
    key = jf.add_api_key("ovs")
    jf.scan()
    small, big = movies(jf)  # Copy/ sorts before Film (2020)/
    assert (big.width, small.width) == (320, 160)
    client = await aiohttp_client(jf.app())
    r = await client.post("/Videos/MergeVersions", params={"ids": f"{small.id},{big.id}"},
                          headers=auth("tok-alice"))  # fmt: skip
    assert r.status == 403
    r = await client.post("/Videos/MergeVersions", params={"ids": f"{small.id},{big.id}"},
                          headers=auth(key))  # fmt: skip
    assert r.status == 204
    assert big.linked == [small.id] and small.primary_version_id == big.id  # widest wins
    jf.scan()  # links survive a rescan
    assert jf.items[big.id].linked == [small.id]
    sources = jf.media_sources(jf.items[big.id])
    assert [(s["Id"], s["Type"]) for s in sources] == [(big.id, "Default"), (small.id, "Grouping")]
    q = {"recursive": "true", "includeItemTypes": "Movie"}
    r = await client.get("/Items", params=q, headers=auth(key))
    listed = [i["Id"] for i in (await r.json())["Items"]]
    assert sorted(listed) == sorted([big.id] if jf.new else [big.id, small.id])
    r = await client.get("/Items", params=q | {"userId": alice}, headers=auth(key))
    assert [i["Id"] for i in (await r.json())["Items"]] == [big.id]
    r = await client.delete(f"/Videos/{small.id}/AlternateSources", headers=auth(key))
    assert r.status == 204
    assert jf.items[big.id].linked == [] and jf.items[small.id].primary_version_id is None
    r = await client.delete(f"/Videos/{small.id}/AlternateSources", headers=auth(key))
    assert r.status == (204 if jf.new else 400)  # 10.11: Guid.Parse(null) -> ArgumentException


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
async def test_download_and_stream_of_a_version(
    tmp_path: Path, clips: Clips, version: str, aiohttp_client: MakeClient
) -> None:
    # LibraryController.GetDownload (Policies.Download, GetItemById with the user),
    # VideosController stream (static), MediaSourceManager.SortMediaSources (widest first)
    jf, lib, root = films(tmp_path, clips, version)
    small = put(clips.small, root / "Film (2020)" / "Film (2020) - Optimized.mp4")
    other = jf.add_library("Hidden", "movies", [tmp_path / "hidden"])
    (tmp_path / "hidden").mkdir()
    jf.add_user("alice", token="tok-alice", libraries=[lib])
    jf.add_user("bob", token="tok-bob", libraries=[other])
    jf.add_user("carol", token="tok-carol", downloads=False)
    jf.scan()
    version_id = nm.item_id(nm.VIDEO, str(small))
    client = await aiohttp_client(jf.app())
    r = await client.get(
        f"/Items/{version_id}/Download", headers=auth("tok-alice") | {"Range": "bytes=10-19"}
    )
    assert r.status == 206 and await r.read() == small.read_bytes()[10:20]
    disposition = r.headers.get("Content-Disposition", "")  # 12.0: PhysicalFile without a name
    assert disposition == ("" if jf.new else 'attachment; filename="Film (2020) - Optimized.mp4"')
    assert (
        await client.get(f"/Items/{version_id}/Download", headers=auth("tok-bob"))
    ).status == 404
    r = await client.get(f"/Items/{version_id}/Download", headers=auth("tok-carol"))
    assert r.status == 403
    primary = movies(jf)[0].id
    stream = f"/Videos/{primary}/stream"
    r = await client.head(stream, params={"static": "true", "mediaSourceId": version_id},
                          headers=auth("tok-alice"))  # fmt: skip
    assert r.status == 200 and int(r.headers["Content-Length"]) == small.stat().st_size
    r = await client.get(stream, params={"static": "true"}, headers=auth("tok-alice"))
    assert await r.read() == (root / "Film (2020)" / "Film (2020).mkv").read_bytes()


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
async def test_source_order_of_item_and_of_playback(
    tmp_path: Path, clips: Clips, version: str, aiohttp_client: MakeClient
) -> None:
    # BaseItem.GetMediaSources (MediaSourceWidthComparator compares one path only: the order
    # stays) vs MediaSourceManager.SortMediaSources (widest first; 12.0: the item's own first)
    root = tmp_path / "films"
    small = put(clips.small, root / "Film (2020)" / "Film (2020).mp4")  # named as the folder
    put(clips.big, root / "Film (2020)" / "Film (2020) - 1080p.mkv")
    jf = JellyfinDouble(version=version)
    jf.add_library("Films", "movies", [root])
    jf.add_user("alice", token="tok-alice")
    jf.scan()
    (movie,) = movies(jf)
    assert movie.path == small
    client = await aiohttp_client(jf.app())
    r = await client.get(f"/Items/{movie.id}", headers=auth("tok-alice"))
    item_widths = [s["MediaStreams"][0]["Width"] for s in (await r.json())["MediaSources"]]
    assert item_widths == [160, 320]
    r = await client.post(f"/Items/{movie.id}/PlaybackInfo", headers=auth("tok-alice"))
    widths = [s["MediaStreams"][0]["Width"] for s in (await r.json())["MediaSources"]]
    assert widths == ([160, 320] if jf.new else [320, 160])
    r = await client.get(f"/Videos/{movie.id}/stream", params={"static": "true"},
                         headers=auth("tok-alice"))  # fmt: skip
    assert int(r.headers["Content-Length"]) == (small.stat().st_size if jf.new else
                                                 clips.big.stat().st_size)  # fmt: skip


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
async def test_next_up_episodes_and_played_state(
    tmp_path: Path, clips: Clips, version: str, aiohttp_client: MakeClient
) -> None:
    # TVSeriesManager.GetNextUp, TvShowsController.GetEpisodes, Video.PropagatePlayedState (12)
    root = tmp_path / "shows"
    for n in (1, 2, 3):
        put(clips.big, root / "Show" / "Season 1" / f"Show S01E0{n}.mkv")
    put(clips.small, root / "Show" / "Season 1" / "Show S01E02 - Optimized.mp4")
    jf = JellyfinDouble(version=version)
    jf.add_library("Shows", "tvshows", [root])
    alice = jf.add_user("alice", token="tok-alice")
    jf.scan()
    series = next(i for i in jf.items.values() if i.kind == "Series")
    client = await aiohttp_client(jf.app())
    r = await client.get(f"/Shows/{series.id}/Episodes", params={"userId": alice},
                         headers=auth("tok-alice"))  # fmt: skip
    episodes = (await r.json())["Items"]
    assert [e["IndexNumber"] for e in episodes] == ([1, 2, 3] if jf.new else [1, 2, 2, 3])
    r = await client.get("/Shows/NextUp", params={"userId": alice}, headers=auth("tok-alice"))
    assert (await r.json())["Items"] == []  # nothing started
    played = "/UserPlayedItems/{}" if jf.new else f"/Users/{alice}/PlayedItems/{{}}"
    r = await client.post(played.format(episodes[0]["Id"]), params={"userId": alice},
                          headers=auth("tok-alice"))  # fmt: skip
    assert r.status == 200 and (await r.json())["Played"] is True
    r = await client.get("/Shows/NextUp", params={"userId": alice, "seriesId": series.id},
                         headers=auth("tok-alice"))  # fmt: skip
    (nxt,) = (await r.json())["Items"]
    assert nxt["IndexNumber"] == 2
    e2 = next(i for i in jf.items.values() if i.kind == "Episode" and i.episode == 2)
    jf.mark_played(alice, e2.id)
    version_id = nm.item_id(
        nm.VIDEO, str(root / "Show" / "Season 1" / "Show S01E02 - Optimized.mp4")
    )
    assert jf.played(alice, version_id) is jf.new  # 10.11: each version its own state


async def test_items_filters_and_latest_order(
    tmp_path: Path, clips: Clips, aiohttp_client: MakeClient
) -> None:
    # ItemsController.GetItems (filters need a user), UserLibraryController.GetLatestMedia
    # (HidePlayedInLatest), sort by DateCreated
    import os

    root = tmp_path / "films"
    for n, name in enumerate(["A (2001)", "B (2002)", "C (2003)"]):
        path = put(clips.small, root / name / f"{name}.mp4")
        os.utime(path, (1_600_000_000 + n * 100, 1_600_000_000 + n * 100))
    jf = JellyfinDouble()
    lib = jf.add_library("Films", "movies", [root])
    alice = jf.add_user("alice", token="tok-alice")
    key = jf.add_api_key("ovs")
    jf.scan()
    a, b, c = movies(jf)
    jf.mark_played(alice, c.id)
    jf.set_favourite(alice, a.id)
    client = await aiohttp_client(jf.app())
    q = {"parentId": lib, "recursive": "true", "includeItemTypes": "Movie"}
    q |= {"sortBy": "DateCreated", "sortOrder": "Descending", "fields": "Path,MediaSources"}

    async def ids(params: dict[str, str]) -> list[str]:
        r = await client.get("/Items", params=params, headers=auth(key))
        return [i["Id"] for i in (await r.json())["Items"]]

    assert await ids(q) == [c.id, b.id, a.id]
    assert await ids(q | {"filters": "IsUnplayed"}) == [c.id, b.id, a.id]  # no user: ignored
    assert await ids(q | {"filters": "IsUnplayed", "userId": alice}) == [b.id, a.id]
    assert await ids(q | {"filters": "IsFavorite", "userId": alice}) == [a.id]
    assert await ids(q | {"limit": "1"}) == [c.id]
    r = await client.get("/Items/Latest", params={"userId": alice, "parentId": lib},
                         headers=auth(key))  # fmt: skip
    assert [i["Id"] for i in await r.json()] == [b.id, a.id]
    r = await client.get("/Library/VirtualFolders", headers=auth(key))
    assert (await r.json())[0] | {"Locations": []} == {
        "Name": "Films", "CollectionType": "movies", "ItemId": lib, "Locations": [],
    }  # fmt: skip


@pytest.mark.parametrize("version", ["10.11.11", "12.0.0"])
async def test_auth(tmp_path: Path, version: str, aiohttp_client: MakeClient) -> None:
    # CustomAuthenticationHandler / AuthorizationContext (12.0: no X-Emby-Token, api_key)
    jf = JellyfinDouble(version=version)
    jf.add_user("alice", token="tok-alice")
    key = jf.add_api_key("ovs")
    client = await aiohttp_client(jf.app())
    r = await client.get("/System/Info/Public")
    assert (await r.json())["Version"] == version
    assert (await client.get("/Users")).status == 401
    assert (await client.get("/Users", headers=auth("nope"))).status == 401
    assert (await client.get("/Users", headers=auth("tok-alice"))).status == 403
    assert (await client.get("/Users", headers=auth(key))).status == 200
    assert (await client.get("/Users/Me", headers=auth("tok-alice"))).status == 200
    legacy = 401 if jf.new else 200
    assert (await client.get("/Users", params={"api_key": key})).status == legacy
    assert (await client.get("/Users", headers={"X-Emby-Token": key})).status == legacy
    assert jf.calls[0] == "GET /System/Info/Public"
