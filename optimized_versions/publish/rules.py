"""Rules: which items a Jellyfin user wants optimized ahead, asked of Jellyfin.

``next-up``: the next ``count`` unwatched episodes of each series the user is in the middle
of (``/Shows/NextUp``, then ``/Shows/{id}/Episodes`` from there); ``latest``: the newest
``count`` unwatched films; ``favourites``: the newest ``count`` favourite films and
episodes; ``playlist``: the first ``count`` videos of the user's playlist of that name.
A library name narrows each to that library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog.profiles import Profile
from ..config.publish_settings import UNTIL_WATCHED, RuleSpec
from ..jellyfin.library import Item, JellyfinLibrary

VIDEOS = ("Movie", "Episode")
_NEWEST = {"latest": ("Movie", "IsUnplayed"), "favourites": ("Movie,Episode", "IsFavorite")}


@dataclass(slots=True)
class RuleState:
    """What a rule's last evaluation found, for the Rules page."""

    items: list[tuple[str, str, int]] = field(default_factory=list)  # id, name, bytes
    problem: str | None = None


class RuleProblem(Exception):
    """Why a rule cannot be evaluated (no such user, library or playlist)."""


@dataclass(frozen=True, slots=True)
class Rule:
    key: str  # file:N (the YAML file, read-only on the page) or page:N
    user: str  # the Jellyfin user's name
    kind: str
    count: int
    profile: str
    library: str | None = None
    playlist: str | None = None
    keep: str | int = UNTIL_WATCHED
    created_by: str | None = None  # page rules: who saved it

    @classmethod
    def of(cls, key: str, spec: RuleSpec, default_profile: str) -> Rule:
        return cls(
            key,
            spec.user,
            spec.kind,
            spec.count,
            spec.profile or default_profile,
            spec.library,
            spec.playlist,
            spec.keep,
        )

    @classmethod
    def saved(cls, row: tuple[Any, ...], default_profile: str) -> Rule:
        """A rule the Rules page saved (a row of the ledger's rules table)."""
        rule_id, user, kind, count, library, playlist, profile, keep, created_by = row
        days = int(keep) if str(keep).isdigit() else keep
        key = f"page:{rule_id}"
        profile = profile or default_profile
        return cls(key, user, kind, count, profile, library, playlist, days, created_by)

    @property
    def keep_days(self) -> int | None:
        return int(self.keep) if self.keep != UNTIL_WATCHED else None

    def describe(self) -> str:
        what = {
            "next-up": f"the next {self.count} unwatched episodes of each series in progress",
            "latest": f"the {self.count} newest unwatched films",
            "favourites": f"{self.count} favourite films and episodes",
            "playlist": f"the first {self.count} videos of the playlist {self.playlist!r}",
        }[self.kind]
        where = f" in {self.library}" if self.library else ""
        keep = "until watched" if self.keep_days is None else f"for {self.keep_days} days"
        return f"{what}{where}, as {self.profile}, kept {keep}"


async def wanted(library: JellyfinLibrary, rule: Rule, user_id: str) -> list[Item]:
    """The items ``rule`` wants now, in its order (no item twice)."""
    parent = await _library_id(library, rule.library) if rule.library else None
    where = {"parentId": parent} if parent else {}
    if rule.kind == "next-up":
        items: list[Item] = []
        for next_one in await library.next_up(user_id, parent):
            series = next_one.get("SeriesId")
            if isinstance(series, str):
                start, limit = str(next_one["Id"]), rule.count * 2
                episodes = await library.episodes(user_id, series, start, limit)
                items += [e for e in episodes if not _played(e)][: rule.count]
    elif rule.kind in _NEWEST:
        kinds, only = _NEWEST[rule.kind]
        newest = {"sortBy": "DateCreated", "sortOrder": "Descending", "limit": str(rule.count)}
        items = await library.items(
            user_id, includeItemTypes=kinds, filters=only, **newest, **where
        )
    else:
        items = await _playlist(library, user_id, rule)
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.get("Type") in VIDEOS and item.get("Id") not in seen:
            seen.add(str(item.get("Id")))
            unique.append(item)
    return unique[: rule.count] if rule.kind != "next-up" else unique


def _played(item: Item) -> bool:
    data = item.get("UserData")
    return isinstance(data, dict) and data.get("Played") is True


async def _library_id(library: JellyfinLibrary, name: str) -> str:
    for folder in await library.libraries():
        if str(folder.get("Name", "")).lower() == name.lower():
            return str(folder.get("ItemId"))
    raise RuleProblem(f"Jellyfin has no library named {name!r}")


async def _playlist(library: JellyfinLibrary, user_id: str, rule: Rule) -> list[Item]:
    playlists = await library.items(user_id, includeItemTypes="Playlist")
    named = [p for p in playlists if str(p.get("Name", "")).lower() == str(rule.playlist).lower()]
    if not named:
        raise RuleProblem(f"the user has no playlist named {rule.playlist!r}")
    return (await library.playlist_items(user_id, str(named[0]["Id"])))[: rule.count * 2]


def estimate(item: Item, bitrate: int) -> int:
    """Bytes a copy at ``bitrate`` bits/s is expected to take: at most the source's size."""
    seconds = (item.get("RunTimeTicks") or 0) / 10_000_000
    sources = item.get("MediaSources") or [{}]
    size = sources[0].get("Size") if isinstance(sources[0], dict) else None
    guess = int(seconds * bitrate / 8)
    return min(guess, size) if isinstance(size, int) and size > 0 else guess


def bitrate(profile: Profile) -> int:
    """The most bits a second a copy in ``profile`` takes (video and audio)."""
    return int(profile.video.max_bitrate + profile.audio.bitrate)


def title(item: Item) -> str:
    """The item's name as the pages show it (an episode with its series)."""
    if item.get("Type") == "Episode":
        return f"{item.get('SeriesName', '')} {item.get('Name', '')}".strip()
    return str(item.get("Name", ""))


def job_item(item: Item) -> dict[str, Any]:
    """What the job keeps of the item (the pages' title, the duration check)."""
    keys = ("Id", "Name", "Type", "SeriesName", "RunTimeTicks", "ProductionYear")
    summary = {k: item[k] for k in keys if k in item}
    sources = item.get("MediaSources") or []
    if sources and isinstance(sources[0], dict):
        summary["MediaSources"] = [{"Id": sources[0].get("Id"), "Size": sources[0].get("Size")}]
    return summary
