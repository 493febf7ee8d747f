"""A stand-in Jellyfin that scans real folders with Jellyfin's naming rules (tests only).

Written from jellyfin/jellyfin v10.11.11 and v12.0-rc5 (see tests/jellyfin_naming.py for the
naming rules); the docstrings name the Jellyfin file each behaviour follows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import av
import jellyfin_naming as nm
from aiohttp import web

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KIND = {nm.MOVIE: "Movie", nm.EPISODE: "Episode", nm.SERIES: "Series", nm.SEASON: "Season"}
KIND |= {nm.FOLDER: "Folder", nm.VIDEO: "Video", nm.COLLECTION_FOLDER: "CollectionFolder"}
FOLDERS = (nm.FOLDER, nm.SERIES, nm.SEASON, nm.COLLECTION_FOLDER)


@dataclass
class Principal:
    user: Any  # User | None (None: an API key)


PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass
class Item:
    id: str
    type: str
    path: Path
    name: str
    parent_id: str | None
    library_id: str
    year: int | None = None
    created: float = 0.0
    owner_id: str | None = None
    local: list[Path] = field(default_factory=list)  # LocalAlternateVersions (paths)
    linked: list[str] = field(default_factory=list)  # LinkedAlternateVersions (ids)
    primary_version_id: str | None = None
    three_d: bool = False
    series_id: str | None = None
    season_id: str | None = None
    season: int | None = None
    episode: int | None = None
    probed: Json | None = None
    probed_stat: tuple[float, int] = (0.0, 0)

    @property
    def kind(self) -> str:
        return KIND[self.type]

    @property
    def width(self) -> int:
        video = [s for s in (self.probed or {}).get("MediaStreams", []) if s["Type"] == "Video"]
        return int(video[0]["Width"]) if video else 0


@dataclass
class Library:
    id: str
    name: str
    collection_type: str
    locations: list[Path]


@dataclass
class User:
    id: str
    name: str
    admin: bool
    token: str
    libraries: list[str] | None
    downloads: bool


def probe(path: Path) -> Json:
    """What the ffprobe provider stores: run time and media streams (PyAV here)."""
    with av.open(str(path)) as container:
        streams: list[Json] = []
        for s in container.streams:
            entry: Json = {"Index": s.index, "Codec": s.codec_context.name}
            if isinstance(s, av.VideoStream):
                entry |= {"Type": "Video", "Width": s.width, "Height": s.height}
            elif isinstance(s, av.AudioStream):
                entry |= {"Type": "Audio", "Channels": s.channels}
                entry["Language"] = s.metadata.get("language")
            else:
                continue
            streams.append(entry)
        ticks = int(container.duration * 10) if container.duration else None
    return {"MediaStreams": streams, "RunTimeTicks": ticks}


def _iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _csv(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _children(folder: Path) -> tuple[list[Path], list[Path]]:
    """A folder's files and sub folders, IgnorePatterns applied, by name."""
    entries = sorted(p for p in folder.iterdir() if not nm.is_ignored(p.name))
    return [p for p in entries if p.is_file()], [p for p in entries if p.is_dir()]


class Scanner:
    """LibraryManager.ResolvePaths with MovieResolver / SeriesResolver / SeasonResolver: what
    items one library's folders resolve to (a dict id -> new Item, not yet merged)."""

    def __init__(self, library: Library, new: bool) -> None:
        self.library, self.new, self.found = library, new, dict[str, Item]()

    def run(self) -> dict[str, Item]:
        for root in self.library.locations:
            files, folders = _children(root)
            tv = self.library.collection_type == "tvshows"
            if not tv:  # MovieResolver.ResolveMultiple: loose files of the root, grouped with
                self._videos(files, self.library.id, root)  # the root's name as folder name
            for folder in folders:
                if tv:
                    self._series(folder, root)
                else:
                    self._movie_folder(folder, self.library.id, root)
        return self.found

    def _add(self, type_name: str, path: Path, name: str, parent: str | None, **kw: Any) -> Item:
        item = Item(nm.item_id(type_name, str(path)), type_name, path, name, parent, **kw)
        item.library_id = self.library.id
        self.found[item.id] = item
        return item

    def _videos(self, files: list[Path], parent: str, root: Path, **kw: Any) -> list[Item]:
        """MovieResolver.ResolveVideos: each group one Movie/Episode, the others owned Videos."""
        tv = self.library.collection_type == "tvshows"
        multi = self.new or not tv  # 10.11: MovieResolver.cs 229-231 passes false for TV
        paths = [PurePosixPath(p) for p in files]
        made = []
        for group in nm.resolve_videos(paths, str(root), multi, tv, self.new):
            type_name = nm.EPISODE if tv else nm.MOVIE
            name = group.name if not tv else group.primary.path.stem
            item = self._add(type_name, Path(group.primary.path), name, parent, library_id="", **kw)
            item.year, item.three_d = group.primary.year, group.primary.three_d
            item.local = [Path(a.path) for a in group.alternates]
            if tv:
                season, episode = nm.parse_episode(group.primary.path)
                item.season = season if season is not None else item.season
                item.episode = episode
            for alternate in group.alternates:  # BaseItem.RefreshMetadataForOwnedVideo
                owned = self._add(nm.VIDEO, Path(alternate.path), alternate.path.stem, None,
                                  library_id="", owner_id=item.id)  # fmt: skip
                owned.three_d = alternate.three_d
            made.append(item)
        return made

    def _movie_folder(self, folder: Path, parent: str, root: Path) -> None:
        """MovieResolver.FindMovie: one movie and no other sub folder = the folder is the movie;
        otherwise a plain Folder whose files resolve as a mixed folder."""
        if folder.name.lower() in nm.EXTRA_FOLDERS:
            return
        files, subfolders = _children(folder)
        others = [f for f in subfolders if f.name.lower() not in nm.EXTRA_FOLDERS]
        before = set(self.found)
        movies = self._videos(files, parent, root)
        if len(movies) == 1 and not others:
            movies[0].name = folder.name  # FindMovie: Name = Path.GetFileName(ContainingFolder)
            return
        for key in set(self.found) - before:
            del self.found[key]
        holder = self._add(nm.FOLDER, folder, folder.name, parent, library_id="")
        self._videos(files, holder.id, root)
        for sub in others:
            self._movie_folder(sub, holder.id, root)

    def _series(self, folder: Path, root: Path) -> None:
        """SeriesResolver (a folder in a tvshows root) and SeasonResolver (its sub folders)."""
        series = self._add(nm.SERIES, folder, folder.name, self.library.id, library_id="")
        files, seasons = _children(folder)
        self._videos(files, series.id, root, series_id=series.id)
        for sub in seasons:
            digits = re.search(r"\d+", sub.name)
            number = int(digits.group()) if digits else None
            season = self._add(nm.SEASON, sub, sub.name, series.id, library_id="", season=number)
            season.series_id = series.id
            inner, _ = _children(sub)
            kw = {"series_id": series.id, "season_id": season.id, "season": number}
            self._videos(inner, season.id, root, **kw)


@dataclass
class JellyfinDouble:
    """The server: libraries, users, items, user data, and an aiohttp app around them."""

    version: str = "10.11.11"
    server_name: str = "jellyfin-double"
    media_updated_delay: float = 0.2  # LibraryMonitor debounces 60 s; shortened for tests
    refresh_delay: float = 0.05
    libraries: dict[str, Library] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    api_keys: dict[str, str] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    user_data: dict[tuple[str, str], Json] = field(default_factory=dict)
    playlists: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    sessions: list[Json] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def new(self) -> bool:
        return int(self.version.split(".")[0]) >= 12

    @property
    def server_id(self) -> str:
        return nm.item_id("ServerId", self.server_name)

    # ---- set-up -------------------------------------------------------------------------
    def add_library(self, name: str, collection_type: str, locations: list[Path]) -> str:
        """A virtual folder: a CollectionFolder whose path is under the program data folder,
        so its id hashes `root\\default\\NAME` (LibraryManager.GetNewItemIdInternal)."""
        library_id = nm.item_id(nm.COLLECTION_FOLDER, "root\\default\\" + name)
        self.libraries[library_id] = Library(library_id, name, collection_type, list(locations))
        return library_id

    def add_user(
        self,
        name: str,
        admin: bool = False,
        token: str | None = None,
        libraries: list[str] | None = None,
        downloads: bool = True,
    ) -> str:
        user_id = nm.item_id("Jellyfin.Database.Implementations.Entities.User", name)
        token = token or f"tok-{name}"
        self.users[user_id] = User(user_id, name, admin, token, libraries, downloads)
        return user_id

    def add_api_key(self, app: str) -> str:
        key = nm.item_id("ApiKey", app)
        self.api_keys[key] = app
        return key

    def add_playlist(self, name: str, user_id: str, item_ids: list[str]) -> str:
        playlist_id = nm.item_id(nm.PLAYLIST, f"/config/data/playlists/{name}")
        self.playlists[playlist_id] = (name, user_id, list(item_ids))
        return playlist_id

    # ---- scanning -----------------------------------------------------------------------
    def scan(self) -> None:
        """A full library scan (RefreshMediaLibraryTask), synchronous."""
        for library in self.libraries.values():
            self._apply(library, None)

    def refresh(self, item_id: str) -> None:
        """ProviderManager refresh of one item: a folder re-reads its subtree (new, removed,
        changed files); a video re-probes itself and its known LocalAlternateVersions only
        (Video.RefreshedOwnedItems): a new sibling file is not picked up."""
        if item_id in self.libraries:
            self._apply(self.libraries[item_id], None)
            return
        item = self.items.get(item_id)
        if item is None:
            return
        if item.type in FOLDERS:
            self._apply(self.libraries[item.library_id], item.path)
            return
        for path in [item.path, *item.local]:
            version = self.items.get(nm.item_id(nm.VIDEO, str(path))) or item
            if version.path == path:
                self._probe(version)

    def _apply(self, library: Library, under: Path | None) -> None:
        found = Scanner(library, self.new).run()

        def inside(path: Path) -> bool:
            return under is None or path == under or under in path.parents

        stale = [i.id for i in self.items.values() if i.library_id == library.id and inside(i.path)]
        for key in stale:
            if key not in found:
                del self.items[key]
        for key, item in found.items():
            if not inside(item.path):
                continue
            old = self.items.get(key)
            if old is not None:
                item.created, item.linked = old.created, old.linked
                item.primary_version_id = old.primary_version_id
                item.probed, item.probed_stat = old.probed, old.probed_stat
            else:
                item.created = item.path.stat().st_mtime
            self.items[key] = item
            if item.type not in FOLDERS:
                self._probe(item)

    def _probe(self, item: Item) -> None:
        try:
            stat = item.path.stat()
        except FileNotFoundError:
            return
        if item.probed is None or item.probed_stat != (stat.st_mtime, stat.st_size):
            try:
                item.probed = probe(item.path)
            except av.error.FFmpegError:
                item.probed = {"MediaStreams": [], "RunTimeTicks": None}
            item.probed_stat = (stat.st_mtime, stat.st_size)

    async def settled(self) -> None:
        """Wait until every queued refresh has run."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def _later(self, delay: float, work: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            work()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- user data ----------------------------------------------------------------------
    def _data(self, user_id: str, item_id: str) -> Json:
        return self.user_data.setdefault(
            (user_id, item_id), {"Played": False, "PlayCount": 0, "IsFavorite": False}
        )

    def mark_played(self, user_id: str, item_id: str, played: bool = True) -> None:
        """UserDataManager per item id; 10.11 keeps one state per version (each version is
        its own item), 12.0 Video.MarkPlayed/MarkUnplayed -> PropagatePlayedState."""
        targets = [item_id]
        item = self.items.get(item_id)
        if self.new and item is not None and item.type not in FOLDERS:
            targets += [v.id for v, _ in self._versions(item) if v.id != item_id]
        for target in targets:
            data = self._data(user_id, target)
            data["Played"] = played
            data["PlayCount"] = data["PlayCount"] + 1 if played else 0

    def set_favourite(self, user_id: str, item_id: str, favourite: bool = True) -> None:
        self._data(user_id, item_id)["IsFavorite"] = favourite

    def played(self, user_id: str, item_id: str) -> bool:
        return bool(self.user_data.get((user_id, item_id), {}).get("Played"))

    # ---- versions -----------------------------------------------------------------------
    def _linked(self, item: Item) -> list[Item]:
        found = [self.items[i] for i in item.linked if i in self.items]
        return sorted(found, key=lambda i: i.name.lower())

    def _versions(self, item: Item) -> list[tuple[Item, str]]:
        """Video.GetAllItemsForMediaSources, then BaseItem.GetMediaSources' stable sort
        (12.0: the queried item first; then non-3D first; MediaSourceWidthComparator only
        compares sources of one path, so it keeps the order otherwise)."""
        primary = self.items.get(item.primary_version_id or "")
        grouped = [(item, "Default")] + [(v, "Grouping") for v in self._linked(item)]
        if primary is not None:
            primary_linked = self._linked(primary)
            kind = "Grouping" if not self.new or item in primary_linked else "Default"
            grouped.append((primary, kind))
            grouped += [(v, "Grouping") for v in primary_linked]
        locals_ = [
            self.items[nm.item_id(nm.VIDEO, str(p))]
            for v, _ in grouped
            for p in v.local
            if nm.item_id(nm.VIDEO, str(p)) in self.items
        ]
        result: list[tuple[Item, str]] = []
        for version, kind in grouped + [(v, "Default") for v in locals_]:
            if all(version.id != seen.id for seen, _ in result):
                result.append((version, kind))
        result.sort(key=lambda v: v[0].three_d)
        if self.new:
            result.sort(key=lambda v: v[0].id != item.id)
        return result

    def media_sources(self, item: Item, widest_first: bool = False) -> list[Json]:
        """BaseItem.GetVersionInfo for every version; widest_first is
        MediaSourceManager.SortMediaSources (PlaybackInfo, and stream without mediaSourceId)."""
        versions = self._versions(item)
        prefix = nm.common_prefix([v.path.stem for v, _ in versions])
        folder = item.path.parent.name
        sources = []
        for version, kind in versions:
            stem = version.path.stem
            if self.new:
                name = nm.source_name_new(stem, prefix, folder, bool(item.local))
            else:
                name = nm.source_name_old(stem, folder, bool(item.local))
            probed = version.probed or {"MediaStreams": [], "RunTimeTicks": None}
            sources.append(
                {
                    "Id": version.id, "Path": str(version.path),
                    "Name": name + ("/3D" if version.three_d else ""), "Type": kind,
                    "Protocol": "File", "Container": version.path.suffix.lstrip("."),
                    "Size": version.path.stat().st_size if version.path.exists() else None,
                    "MediaStreams": probed["MediaStreams"], "RunTimeTicks": probed["RunTimeTicks"],
                    "VideoType": "VideoFile", "IsRemote": False, "SupportsDirectStream": True,
                    "Video3DFormat": "HalfSideBySide" if version.three_d else None,
                }
            )  # fmt: skip
        if widest_first:
            sources.sort(key=lambda s: -max([m.get("Width", 0) for m in s["MediaStreams"]] + [0]))
            sources.sort(key=lambda s: s["Video3DFormat"] is not None)
            if self.new:
                sources.sort(key=lambda s: s["Id"] != item.id)
        return sources

    def merge_versions(self, ids: list[str]) -> None:
        """VideosController.MergeVersions: the primary is one that already has versions (and
        no primary itself), else the widest non-3D; the others link to it."""
        videos = sorted((self.items[i] for i in ids if i in self.items), key=lambda i: i.id)
        videos = [v for v in videos if v.type not in FOLDERS]
        if len(videos) < 2:
            raise web.HTTPBadRequest(text="Please supply at least two videos to merge.")
        primary = next(
            (v for v in videos if self._source_count(v) > 1 and not v.primary_version_id), None
        )
        if primary is None:
            primary = sorted(videos, key=lambda v: (v.three_d, -v.width))[0]
        links = list(primary.linked)
        for video in videos:
            if video.id == primary.id:
                continue
            video.primary_version_id = primary.id
            for linked in [video.id, *video.linked]:
                if linked not in links:
                    links.append(linked)
            video.linked = []
        primary.linked = links

    def _source_count(self, video: Item) -> int:
        """Video.GetMediaSourceCount (10.11 counts stale links too)."""
        owner = self.items.get(video.primary_version_id or "", video)
        links = owner.linked if not self.new else [i for i in owner.linked if i in self.items]
        return len(links) + len(owner.local) + 1

    def delete_alternate_sources(self, item: Item) -> None:
        """VideosController.DeleteAlternateSources; 10.11 parses a missing PrimaryVersionId
        (ArgumentNullException, an ArgumentException: 400 by ExceptionMiddleware)."""
        if not item.linked:
            if item.primary_version_id is None and not self.new:
                raise web.HTTPBadRequest(text="Value cannot be null. (Parameter 'input')")
            if item.primary_version_id is not None:
                primary = self.items.get(item.primary_version_id)
                if primary is None:
                    raise web.HTTPNotFound()
                item = primary
        for link in self._linked(item):
            link.primary_version_id, link.linked = None, []
        item.linked, item.primary_version_id = [], None

    # ---- queries ------------------------------------------------------------------------
    def visible(self, item: Item, user: User | None) -> bool:
        """BaseItem.IsVisible: the user's EnabledFolders (an API key sees every library)."""
        return user is None or user.libraries is None or item.library_id in user.libraries

    def query(self, user: User | None, q: dict[str, str]) -> list[Item]:
        """ItemsController.GetItems -> BaseItemRepository: owned versions never listed; 12.0
        leaves out items with a PrimaryVersionId; 10.11 groups by PresentationUniqueKey
        (a merged item's key is its primary's id) only for a query with a user."""
        parent, types = q.get("parentId"), _csv(q.get("includeItemTypes"))
        recursive = q.get("recursive", "false").lower() == "true"
        found = []
        for item in self.items.values():
            if item.owner_id or not self.visible(item, user):
                continue
            if parent and not (item.parent_id == parent or (recursive and self._in(item, parent))):
                continue
            if not parent and not recursive and item.parent_id not in self.libraries:
                continue
            if (types and item.kind not in types) or (self.new and item.primary_version_id):
                continue
            found.append(item)
        if user is not None and not self.new:
            keys: dict[str, Item] = {}
            for item in sorted(found, key=lambda i: i.primary_version_id is not None):
                keys.setdefault(item.primary_version_id or item.id, item)
            found = [i for i in found if keys.get(i.primary_version_id or i.id) is i]
        return self._filter_sort(user, found, q)

    def _in(self, item: Item, ancestor: str) -> bool:
        if item.library_id == ancestor:
            return True
        parent = self.items.get(item.parent_id or "")
        while parent is not None:
            if parent.id == ancestor:
                return True
            parent = self.items.get(parent.parent_id or "")
        return False

    def _filter_sort(self, user: User | None, found: list[Item], q: dict[str, str]) -> list[Item]:
        """Filters need a user (the repository ignores IsPlayed/IsFavorite without one)."""
        filters = _csv(q.get("filters"))
        if user is not None:
            if "IsPlayed" in filters or "IsUnplayed" in filters:
                want = "IsPlayed" in filters
                found = [i for i in found if self.played(user.id, i.id) == want]
            if "IsFavorite" in filters:
                found = [i for i in found if self._data(user.id, i.id)["IsFavorite"]]
        keys: dict[str, Callable[[Item], Any]] = {
            "DateCreated": lambda i: i.created,
            "SortName": lambda i: i.name.lower(),
            "Name": lambda i: i.name,
            "ProductionYear": lambda i: i.year or 0,
        }
        order = [k for k in _csv(q.get("sortBy")) if k in keys] or ["SortName"]
        descending = q.get("sortOrder", "Ascending").split(",")[0] == "Descending"
        found.sort(key=lambda i: tuple(keys[k](i) for k in order), reverse=descending)
        start = int(q.get("startIndex", "0"))
        limit = int(q["limit"]) if q.get("limit") else None
        return found[start : None if limit is None else start + limit]

    def episodes(self, user: User | None, series_id: str) -> list[Item]:
        q = {"parentId": series_id, "recursive": "true", "includeItemTypes": "Episode"}
        found = self.query(user, q)
        return sorted(found, key=lambda e: (e.season or 0, e.episode or 0, e.name))

    def next_up(self, user: User, series_id: str | None, rewatching: bool) -> list[Item]:
        """TVSeriesManager.GetNextUp: per series with a played episode, the first episode
        after the last played one that is unplayed (with enableRewatching: the next one)."""
        result = []
        for series in self.items.values():
            if series.type != nm.SERIES or (series_id and series.id != series_id):
                continue
            episodes = self.episodes(user, series.id)
            played = [n for n, e in enumerate(episodes) if self.played(user.id, e.id)]
            if not played:
                continue
            after = episodes[played[-1] + 1 :]
            nxt = next((e for e in after if rewatching or not self.played(user.id, e.id)), None)
            if nxt is not None:
                result.append(nxt)
        return result

    def latest(self, user: User, q: dict[str, str]) -> list[Item]:
        """UserViewManager.GetLatestItems: newest first, played hidden (HidePlayedInLatest),
        episodes of one series grouped into the series when more than one is new."""
        types = q.get("includeItemTypes") or "Movie,Episode"
        query = {"parentId": q.get("parentId", ""), "recursive": "true", "filters": "IsUnplayed"}
        query |= {"includeItemTypes": types, "sortBy": "DateCreated", "sortOrder": "Descending"}
        found = self.query(user, query)
        limit, result, seen = int(q.get("limit", "20")), list[Item](), set[str]()
        for item in found:
            series = [e for e in found if item.series_id and e.series_id == item.series_id]
            chosen = self.items[item.series_id] if item.series_id and len(series) > 1 else item
            if chosen.id not in seen:
                seen.add(chosen.id)
                result.append(chosen)
        return result[:limit]

    def dto(self, item: Item, user: User | None, fields: Iterable[str] = ("*",)) -> Json:
        """DtoService.GetBaseItemDto (the fields this double knows)."""
        wanted = set(fields)
        probed = item.probed or {}
        out: Json = {
            "Id": item.id, "Name": item.name, "ServerId": self.server_id, "Type": item.kind,
            "IsFolder": item.type in FOLDERS, "ParentId": item.parent_id,
            "DateCreated": _iso(item.created), "ProductionYear": item.year,
            "RunTimeTicks": probed.get("RunTimeTicks"), "MediaType": "Video",
        }  # fmt: skip
        if item.type == nm.EPISODE:
            out |= {"SeriesId": item.series_id, "SeasonId": item.season_id}
            out |= {"IndexNumber": item.episode, "ParentIndexNumber": item.season}
        if item.type in FOLDERS:
            out["MediaType"] = "Unknown"
        if "*" in wanted or "Path" in wanted:
            out["Path"] = str(item.path)
        if item.type not in FOLDERS and ("*" in wanted or "MediaSources" in wanted):
            out["MediaSources"] = self.media_sources(item)
            out["MediaStreams"] = probed.get("MediaStreams", [])
        if user is not None:
            data = dict(self._data(user.id, item.id))
            out["UserData"] = data | {"Key": item.id, "ItemId": item.id}
        return out

    # ---- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        get, post, delete = app.router.add_get, app.router.add_post, app.router.add_delete
        get("/System/Info/Public", self._h_info)
        get("/Users", self._h_users)
        get("/Users/Me", self._h_me)
        get("/Library/VirtualFolders", self._h_virtual_folders)
        get("/Items", self._h_items)
        get("/Items/Latest", self._h_latest)
        get("/Items/{id}", self._h_item)
        get("/Users/{userId}/Items/{id}", self._h_item)
        post("/Items/{id}/PlaybackInfo", self._h_playback_info)
        post("/Items/{id}/Refresh", self._h_refresh)
        post("/Library/Media/Updated", self._h_media_updated)
        post("/Videos/MergeVersions", self._h_merge)
        delete("/Videos/{id}/AlternateSources", self._h_unmerge)
        get("/Items/{id}/Download", self._h_download)
        get("/Videos/{id}/stream", self._h_stream)  # aiohttp answers HEAD on GET routes
        get("/Shows/NextUp", self._h_next_up)
        get("/Shows/{id}/Episodes", self._h_episodes)
        get("/Playlists/{id}/Items", self._h_playlist)
        get("/Sessions", self._h_sessions)
        for verb in ("POST", "DELETE"):
            app.router.add_route(verb, "/UserPlayedItems/{id}", self._h_played)
            app.router.add_route(verb, "/Users/{userId}/PlayedItems/{id}", self._h_played)
            app.router.add_route(verb, "/UserFavoriteItems/{id}", self._h_favourite)
            app.router.add_route(verb, "/Users/{userId}/FavoriteItems/{id}", self._h_favourite)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        query = f"?{request.query_string}" if request.query_string else ""
        self.calls.append(f"{request.method} {request.path}{query}")
        if request.path != "/System/Info/Public":
            request[PRINCIPAL] = Principal(self._authenticate(request))
        return await handler(request)

    def _authenticate(self, request: web.Request) -> User | None:
        """Jellyfin.Api CustomAuthenticationHandler: the Authorization header's Token=; 10.11
        also X-Emby-Token and api_key=, which 12.0 turns off by default. None = an API key."""
        header = request.headers.get("Authorization", "")
        match = re.search(r'Token="([^"]*)"', header)
        token = match.group(1) if match else None
        if token is None and not self.new:
            token = request.headers.get("X-Emby-Token") or request.query.get("api_key")
        if token in self.api_keys:
            return None
        for user in self.users.values():
            if user.token == token:
                return user
        raise web.HTTPUnauthorized()

    def _admin(self, request: web.Request) -> None:
        """Policies.RequiresElevation (an API key is an administrator)."""
        user = request[PRINCIPAL].user
        if user is not None and not user.admin:
            raise web.HTTPForbidden()

    def _user(self, request: web.Request) -> User | None:
        """RequestHelpers.GetUserId: ?userId= (someone else's only for an admin), else the
        token's user; None for an API key without userId."""
        caller: User | None = request[PRINCIPAL].user
        wanted = request.query.get("userId") or request.match_info.get("userId")
        if not wanted:
            return caller
        if wanted not in self.users:
            raise web.HTTPNotFound()
        if caller is not None and caller.id != wanted and not caller.admin:
            raise web.HTTPForbidden()
        return self.users[wanted]

    def _item(self, request: web.Request, user: User | None) -> Item:
        """LibraryManager.GetItemById<T>(id, user): 404 where the user cannot see it."""
        item = self.items.get(request.match_info["id"].replace("-", "").lower())
        if item is None or not self.visible(item, user):
            raise web.HTTPNotFound()
        return item

    def _list(self, items: list[Item], user: User | None, request: web.Request) -> web.Response:
        fields = _csv(request.query.get("fields"))
        dtos = [self.dto(i, user, fields) for i in items]
        return web.json_response({"Items": dtos, "TotalRecordCount": len(dtos), "StartIndex": 0})

    async def _h_info(self, request: web.Request) -> web.Response:
        body = {"Version": self.version, "ServerName": self.server_name, "Id": self.server_id}
        return web.json_response(body | {"ProductName": "Jellyfin Server", "LocalAddress": ""})

    def _user_dto(self, user: User) -> Json:
        policy: Json = {"IsAdministrator": user.admin, "EnableContentDownloading": user.downloads}
        policy |= {"EnableAllFolders": user.libraries is None}
        policy["EnabledFolders"] = user.libraries or []
        return {"Id": user.id, "Name": user.name, "ServerId": self.server_id, "Policy": policy}

    async def _h_users(self, request: web.Request) -> web.Response:
        self._admin(request)
        return web.json_response([self._user_dto(u) for u in self.users.values()])

    async def _h_me(self, request: web.Request) -> web.Response:
        if request[PRINCIPAL].user is None:
            raise web.HTTPBadRequest(text="API keys have no user")
        return web.json_response(self._user_dto(request[PRINCIPAL].user))

    async def _h_virtual_folders(self, request: web.Request) -> web.Response:
        self._admin(request)
        body = [
            {"Name": lib.name, "CollectionType": lib.collection_type, "ItemId": lib.id,
             "Locations": [str(p) for p in lib.locations]}
            for lib in self.libraries.values()
        ]  # fmt: skip
        return web.json_response(body)

    async def _h_items(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if _csv(request.query.get("includeItemTypes")) == ["Playlist"]:
            # PlaylistsFolder: a user's own playlists (Playlist.IsVisible: owner or shared)
            mine = [
                {"Id": key, "Name": name, "Type": "Playlist", "MediaType": "Video"}
                for key, (name, owner, _) in self.playlists.items()
                if user is None or owner == user.id
            ]
            return web.json_response({"Items": mine, "TotalRecordCount": len(mine)})
        return self._list(self.query(user, dict(request.query)), user, request)

    async def _h_latest(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            raise web.HTTPBadRequest(text="userId is required")
        fields = _csv(request.query.get("fields"))
        return web.json_response(
            [self.dto(i, user, fields) for i in self.latest(user, dict(request.query))]
        )

    async def _h_item(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if request.match_info["id"] in self.libraries:
            lib = self.libraries[request.match_info["id"]]
            return web.json_response({"Id": lib.id, "Name": lib.name, "Type": "CollectionFolder"})
        return web.json_response(self.dto(self._item(request, user), user))

    async def _h_playback_info(self, request: web.Request) -> web.Response:
        user = self._user(request)
        sources = self.media_sources(self._item(request, user), widest_first=True)
        return web.json_response({"MediaSources": sources, "PlaySessionId": "double"})

    async def _h_refresh(self, request: web.Request) -> web.Response:
        """ItemRefreshController.Refresh: queued (high priority), 204 at once."""
        self._admin(request)
        item_id = request.match_info["id"]
        if item_id not in self.libraries:
            self._item(request, None)
        self._later(self.refresh_delay, lambda: self.refresh(item_id))
        return web.Response(status=204)

    async def _h_media_updated(self, request: web.Request) -> web.Response:
        """LibraryController.PostUpdatedMedia -> LibraryMonitor.ReportFileSystemChanged:
        debounced, then the nearest item above the path is refreshed."""
        body = await request.json()
        for update in body.get("Updates", []):
            target = self._nearest(Path(update["Path"]))
            if target is not None:
                self._later(self.media_updated_delay, functools.partial(self.refresh, target))
        return web.Response(status=204)

    def _nearest(self, path: Path) -> str | None:
        for folder in [path, *path.parents]:
            for item in self.items.values():
                if item.type in FOLDERS and item.path == folder:
                    return item.id
            for lib in self.libraries.values():
                if folder in lib.locations:
                    return lib.id
        return None

    async def _h_merge(self, request: web.Request) -> web.Response:
        self._admin(request)
        self.merge_versions(_csv(request.query.get("ids")))
        return web.Response(status=204)

    async def _h_unmerge(self, request: web.Request) -> web.Response:
        self._admin(request)
        self.delete_alternate_sources(self._item(request, self._user(request)))
        return web.Response(status=204)

    def _file(self, path: Path, attachment: bool) -> web.FileResponse:
        """ASP.NET PhysicalFile with range processing: Range -> 206 (aiohttp does the same)."""
        headers = {"Content-Type": "video/x-matroska" if path.suffix == ".mkv" else "video/mp4"}
        if attachment:
            headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return web.FileResponse(path, headers=headers)

    async def _h_download(self, request: web.Request) -> web.StreamResponse:
        """LibraryController.GetDownload: Policies.Download (EnableContentDownloading), the
        version's own visibility; 10.11 names the file (Content-Disposition), 12.0 does not."""
        user = self._user(request)
        if user is not None and not user.downloads:
            raise web.HTTPForbidden()
        item = self._item(request, user)
        return self._file(item.path, attachment=not self.new)

    async def _h_stream(self, request: web.Request) -> web.StreamResponse:
        """VideosController.GetVideoStream with static=true: the source named by mediaSourceId,
        else the first of the sorted playback sources."""
        user = self._user(request)
        sources = self.media_sources(self._item(request, user), widest_first=True)
        wanted = request.query.get("mediaSourceId")
        chosen = next((s for s in sources if not wanted or s["Id"] == wanted), None)
        if chosen is None:
            raise web.HTTPNotFound()
        return self._file(Path(chosen["Path"]), attachment=False)

    async def _h_next_up(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            raise web.HTTPBadRequest(text="userId is required")
        rewatching = request.query.get("enableRewatching", "false").lower() == "true"
        found = self.next_up(user, request.query.get("seriesId"), rewatching)
        if parent := request.query.get("parentId"):  # TvShowsController: the library's only
            found = [item for item in found if self._in(item, parent)]
        limit = int(request.query.get("limit", "0")) or None
        return self._list(found[:limit], user, request)

    async def _h_episodes(self, request: web.Request) -> web.Response:
        """TvShowsController.GetEpisodes: in order; startItemId (12.0: a version's primary)."""
        user = self._user(request)
        series = self._item(request, user)
        found = self.episodes(user, series.id)
        start = request.query.get("startItemId")
        if start and self.new and start in self.items:
            start = self.items[start].primary_version_id or start
        ids = [e.id for e in found]
        if start in ids:
            found = found[ids.index(start) :]
        limit = int(request.query.get("limit", "0")) or None
        return self._list(found[:limit], user, request)

    async def _h_playlist(self, request: web.Request) -> web.Response:
        user = self._user(request)
        name_owner_items = self.playlists.get(request.match_info["id"])
        if name_owner_items is None:
            raise web.HTTPNotFound()
        _, owner, ids = name_owner_items
        if user is not None and user.id != owner and not user.admin:
            raise web.HTTPForbidden()
        found = [
            self.items[i] for i in ids if i in self.items and self.visible(self.items[i], user)
        ]
        return self._list(found, user, request)

    async def _h_sessions(self, request: web.Request) -> web.Response:
        user: User | None = request[PRINCIPAL].user
        shown = [
            s for s in self.sessions if user is None or user.admin or s.get("UserId") == user.id
        ]
        return web.json_response(shown)

    async def _h_played(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            raise web.HTTPBadRequest(text="userId is required")
        item = self._item(request, user)
        self.mark_played(user.id, item.id, request.method == "POST")
        return web.json_response(self.dto(item, user)["UserData"])

    async def _h_favourite(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            raise web.HTTPBadRequest(text="userId is required")
        item = self._item(request, user)
        self.set_favourite(user.id, item.id, request.method == "POST")
        return web.json_response(self.dto(item, user)["UserData"])
