"""Publishing one finished copy into Jellyfin as a version of its item, and taking it back.

Publish: find the original (Jellyfin's path, mapped onto this host), check the folder
(naming.py), copy the output into a dot-file beside the target (Jellyfin ignores those),
check its SHA-256, link it to its name (never over a file), note it in the ledger, ask
Jellyfin to look (a refresh of the parent folder), wait until the item lists the new file
as a source with media streams and still has its id; merge it where names cannot group
(10.x episodes, PUBLISH=library). Anything else: the file is taken back and the ledger says
why. Unpublish: unlink a merge, delete the file only if it is still the one we wrote.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import Unavailable
from ..jellyfin.library import Item, JellyfinLibrary
from . import naming
from .files import Paths, PublishError, place, remove_if_ours
from .ledger import Ledger, Published

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Copy:
    """A finished job's output, as the publisher needs it."""

    job_id: str
    user_id: str  # whose view of Jellyfin to look through (the rule's user)
    item_id: str
    profile: str
    name: str
    output: Path
    size: int
    sha256: str


class Publisher:
    def __init__(
        self,
        config: Config,
        library: JellyfinLibrary,
        ledger: Ledger,
        clock: Callable[[], float],
        look_timeout: float = 300.0,
    ) -> None:
        self._config = config
        self._library = library
        self._ledger = ledger
        self._clock = clock
        self._paths = Paths(config.path_map)
        self._look_timeout = look_timeout
        self._version: str | None = None
        self._merging = asyncio.Lock()  # one merge at a time (a scan can overwrite a merge)

    async def version(self) -> str:
        if self._version is None:
            self._version = await self._library.version()
        return self._version

    async def publish(self, copy: Copy) -> Published | None:
        """Publish ``copy``; the ledger's row afterwards (refused and failed ones too)."""
        note = self._ledger.note
        key = (copy.item_id, copy.profile)
        stale = self._ledger.get(*key)
        if stale is not None and stale.state == "writing":  # an earlier run stopped half-way
            await self._take_back(stale, await self._library.item(copy.user_id, copy.item_id))
        try:
            item, original = await self._original(copy)
            placement = await self._placement(item, original, copy.profile)
            if placement.target is None:
                raise PublishError(placement.reason or "refused")
        except PublishError as exc:
            note(*key, copy.name, self._clock(), state="refused", reason=str(exc), path=None)
            log.info("item %s: not published: %s", copy.item_id, exc)
            return self._ledger.get(*key)
        target = placement.target
        # noted before the file exists: a crash from here on leaves a row that names it
        note(
            *key,
            copy.name,
            self._clock(),
            state="writing",
            path=str(target),
            size=copy.size,
            sha256=copy.sha256,
            method=placement.method,
            job_id=copy.job_id,
            reason=None,
        )
        try:
            await asyncio.to_thread(place, copy.output, target, copy.sha256)
        except (OSError, PublishError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            note(
                *key,
                copy.name,
                self._clock(),
                state="failed",
                path=None,
                size=0,
                reason=f"could not write {target.name} into {target.parent}: {why}",
            )
            return self._ledger.get(*key)
        try:
            version_id = await self._make_known(copy, item, target, placement.method)
        except (PublishError, Unavailable) as exc:
            await self._take_back(self._ledger.get(*key), item)
            note(
                *key,
                copy.name,
                self._clock(),
                state="failed",
                path=None,
                size=0,
                reason=f"taken back: {exc}",
            )
            log.warning("item %s: published copy taken back: %s", copy.item_id, exc)
            return self._ledger.get(*key)
        note(*key, copy.name, self._clock(), state="published", version_id=version_id)
        log.info("item %s: published as %s (%s)", copy.item_id, target.name, placement.method)
        return self._ledger.get(*key)

    async def unpublish(self, row: Published, user_id: str) -> None:
        """Take a published copy back: unlinked, and deleted if it is still ours as written."""
        item = await self._library.item(user_id, row.item_id)
        await self._take_back(row, item)
        self._ledger.forget(row.item_id, row.profile)
        # unlinking undid every merge of the item: our copies in other profiles are merged again
        kept = [
            r.version_id
            for r in self._ledger.all()
            if r.item_id == row.item_id and r.method == "merge" and r.state == "published"
        ]
        if row.method == "merge" and item is not None and kept:
            async with self._merging:
                await self._library.merge_versions([row.item_id, *filter(None, kept)])

    # --- the steps ---
    async def check(self, item: Item, profile: str) -> str | None:
        """Why ``item``'s copy could not be published as its folder is now; None if it can."""
        try:
            placement = await self._placement(item, self._here(item), profile)
        except PublishError as exc:
            return str(exc)
        return placement.reason

    async def _original(self, copy: Copy) -> tuple[Item, Path]:
        item = await self._library.item(copy.user_id, copy.item_id)
        if item is None:
            raise PublishError("Jellyfin no longer has the item")
        return item, self._here(item)

    def _here(self, item: Item) -> Path:
        """The item's file on this host."""
        path = item.get("Path")
        if not isinstance(path, str):
            raise PublishError("Jellyfin gave no path for the item")
        here = self._paths.here(path)
        if here is None or not here.is_file():
            raise PublishError(f"{path} is not mounted here (PATH_MAP)")
        return here

    async def _placement(self, item: Item, original: Path, profile: str) -> naming.Placement:
        config = self._config
        label = naming.label(config.publish_label, profile, config.default_profile)
        if self._config.publish == "library":
            return await self._library_placement(item, original, label)
        version = await self.version()
        listing = await asyncio.to_thread(lambda: list(original.parent.iterdir()))
        if item.get("Type") == "Episode":
            return naming.episode(original, label, listing, version)
        if item.get("Type") != "Movie":
            return naming.Placement.refused(f"a {item.get('Type')} is neither film nor episode")
        roots = [p for p in await self._roots() if p is not None]
        return naming.movie(original, label, listing, roots, version)

    async def _library_placement(self, item: Item, original: Path, label: str) -> naming.Placement:
        publish_dir = self._config.publish_dir
        if publish_dir is None or self._paths.jellyfin(publish_dir.resolve()) is None:
            return naming.Placement.refused("PUBLISH_DIR is unset or not in PATH_MAP")
        root = next((r for r in await self._roots() if r and original.is_relative_to(r)), None)
        if root is None:
            return naming.Placement.refused(f"{original} is in no library Jellyfin names")
        relative = original.parent.relative_to(root)
        shelf = publish_dir.resolve()  # another profile's copies on a shelf of their own:
        if label != self._config.publish_label:  # two in one folder would group there
            shelf = shelf / label
        folder = shelf / relative
        if relative == Path("."):  # loose in the root: a folder of its own there
            folder = folder / original.stem
        return naming.Placement(folder / f"{folder.name} - {label}.mp4", method="merge")

    async def _roots(self) -> list[Path | None]:
        libraries = await self._library.libraries()
        return [self._paths.here(str(p)) for lib in libraries for p in lib.get("Locations") or []]

    async def _make_known(self, copy: Copy, item: Item, target: Path, method: str) -> str:
        """Tell Jellyfin, wait until it lists the copy as a version; the version's id."""
        where = self._paths.jellyfin(target)
        if where is None:
            raise PublishError(f"{target.parent} is not in PATH_MAP: Jellyfin cannot see it")
        if method == "name":
            await self._library.refresh(str(item.get("ParentId") or item.get("SeasonId")))
            return await self._listed(copy.user_id, copy.item_id, item["Path"], where)
        async with self._merging:
            folder = await self._folder_of(target)
            await self._library.refresh(folder)
            other = await self._appeared(copy.user_id, folder, where, item.get("Type", ""))
            await self._library.merge_versions([copy.item_id, other])
            version_id = await self._listed(copy.user_id, copy.item_id, item["Path"], where)
            # where the original is listed (its season, its folder) the copy must not be too
            beside = str(item.get("ParentId") or folder)
            listed = await self._library.items(
                copy.user_id, parentId=beside, includeItemTypes=str(item.get("Type"))
            )
            if any(i.get("Id") == other for i in listed):
                raise PublishError("Jellyfin lists the merged copy beside the original")
            return version_id

    async def _listed(self, user_id: str, item_id: str, original: str, where: str) -> str:
        """Poll the item until ``where`` is one of its sources, probed; its source id."""
        deadline = self._clock() + self._look_timeout
        while True:
            item = await self._library.item(user_id, item_id)
            if item is None:
                raise PublishError("the item's id changed: the copy became its main version")
            if item.get("Path") != original:
                raise PublishError("the item's main file is no longer the original")
            for source in item.get("MediaSources") or []:
                if source.get("Path") == where and source.get("MediaStreams"):
                    return str(source.get("Id"))
            if self._clock() > deadline:
                raise PublishError(f"Jellyfin did not list the copy in {self._look_timeout:g} s")
            await asyncio.sleep(0.5)

    async def _folder_of(self, target: Path) -> str:
        """The id of the library whose folder holds ``target`` (refreshed to find it)."""
        where = self._paths.jellyfin(target) or ""
        for lib in await self._library.libraries():
            if any(where.startswith(str(p).rstrip("/") + "/") for p in lib.get("Locations") or []):
                return str(lib.get("ItemId"))
        raise PublishError(f"{target.parent} is in no library of Jellyfin's: add it as one")

    async def _appeared(self, user_id: str, folder: str, where: str, kind: str) -> str:
        deadline = self._clock() + self._look_timeout
        while self._clock() <= deadline:
            for found in await self._library.items(user_id, parentId=folder, includeItemTypes=kind):
                sources = found.get("MediaSources") or [{}]
                if found.get("Path") == where and sources[0].get("MediaStreams"):
                    return str(found["Id"])
            await asyncio.sleep(0.5)
        raise PublishError(f"Jellyfin did not find the copy in {self._look_timeout:g} s")

    async def _take_back(self, row: Published | None, item: Item | None) -> None:
        if row is None or row.path is None:
            return
        path = Path(row.path)
        if row.method == "merge" and item is not None:
            try:
                await self._library.unlink_versions(str(item.get("Id")))
            except Unavailable as exc:
                log.warning("item %s: could not unlink the merged copy: %s", row.item_id, exc)
        removed = await asyncio.to_thread(remove_if_ours, path, row.size, row.sha256)
        if not removed:
            log.warning("%s changed since it was published: left in place", path)
        if item is not None:
            try:
                await self._library.refresh(str(item.get("ParentId") or item.get("Id")))
            except Unavailable as exc:
                log.warning("item %s: Jellyfin was not told: %s", row.item_id, exc)
