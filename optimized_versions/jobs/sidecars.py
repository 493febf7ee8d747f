"""External subtitles (Jellyfin sidecar files): which ones a job needs, fetched into the
job's temp folder (so that ffmpeg reads a local file and never sees a token) from Jellyfin
with the user's token, or, on a worker host, from the server that holds the token."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from ..catalog.profiles import Profile
from ..errors import Unavailable
from ..jellyfin.client import JellyfinClient
from ..jellyfin.urls import secrets_in
from ..media.probe import SubtitleInfo
from ..media.tracks import TEXT

log = logging.getLogger(__name__)

MAX_BYTES = 16 * 1024 * 1024  # a film's subtitles are kilobytes; more is not a subtitle
# Jellyfin's codec names for sidecar files, as FFmpeg names them
_CODECS = {"srt": "subrip", "vtt": "webvtt", "pgssub": "hdmv_pgs_subtitle", "sub": "dvd_subtitle"}


class Subtitles(Protocol):
    """Where a job's sidecar files come from."""

    async def item(self) -> dict[str, Any] | None:
        """The item as Jellyfin lists it (its MediaStreams), when the request had none."""
        ...

    async def subtitle(self, source_id: str, index: int, limit: int) -> bytes:
        """A sidecar file as SubRip text; Unavailable with the reason."""
        ...


@dataclass(frozen=True, slots=True)
class FromJellyfin:
    client: JellyfinClient
    owner_id: str
    item_id: str
    token: str

    async def item(self) -> dict[str, Any] | None:
        return await self.client.item(self.owner_id, self.item_id, self.token)

    async def subtitle(self, source_id: str, index: int, limit: int) -> bytes:
        return await self.client.subtitle(self.item_id, source_id, index, self.token, limit)


def from_jellyfin(
    client: JellyfinClient | None, owner_id: str, item_id: str, source: str
) -> FromJellyfin | None:
    """Jellyfin with the token in the job's source URL; None without either."""
    token = next(iter(secrets_in(source)), None)
    if client is None or token is None:
        return None
    return FromJellyfin(client, owner_id, item_id, token)


def source_id(url: str, item_id: str) -> str:
    return _query(url, "mediasourceid") or item_id


def _query(url: str, name: str) -> str | None:
    return next((v for k, v in parse_qsl(urlsplit(url).query) if k.lower() == name), None)


def _streams(item: dict[str, Any], source_id: str | None) -> list[dict[str, Any]]:
    """The item's MediaStreams: those of the chosen media source when the item lists them."""
    for source in item.get("MediaSources") or []:
        if isinstance(source, dict) and source.get("Id") == source_id:
            streams = source.get("MediaStreams")
            if isinstance(streams, list):
                return [s for s in streams if isinstance(s, dict)]
    streams = item.get("MediaStreams")
    return [s for s in streams if isinstance(s, dict)] if isinstance(streams, list) else []


def external_subtitles(item: dict[str, Any], url: str) -> list[SubtitleInfo]:
    """The sidecar subtitle files the request's item lists (not fetched yet)."""
    found = []
    for stream in _streams(item, _query(url, "mediasourceid")):
        index = stream.get("Index")
        if stream.get("Type") != "Subtitle" or not stream.get("IsExternal"):
            continue
        if not isinstance(index, int) or isinstance(index, bool):
            continue
        codec = str(stream.get("Codec") or "").lower()
        language = stream.get("Language")
        title = stream.get("Title")
        found.append(
            SubtitleInfo(
                index=index,
                codec=_CODECS.get(codec, codec),
                language=language if isinstance(language, str) and language != "und" else None,
                title=title if isinstance(title, str) and title else None,
                default=bool(stream.get("IsDefault")),
                forced=bool(stream.get("IsForced")),
                external=True,
            )
        )
    return found


def wanted(sub: SubtitleInfo, profile: Profile, chosen: int | None) -> bool:
    """Whether the job keeps this sidecar file (image ones are never soft tracks)."""
    if sub.codec not in TEXT:
        return False
    return sub.index == chosen or profile.subtitles == "all" or sub.forced


def _lists_streams(item: dict[str, Any]) -> bool:
    sources = item.get("MediaSources")
    return "MediaStreams" in item or (
        isinstance(sources, list)
        and any(isinstance(s, dict) and "MediaStreams" in s for s in sources)
    )


async def fetch(
    subtitles: Subtitles | None,
    item_id: str,
    item: dict[str, Any],
    source: str,
    profile: Profile,
    chosen: int | None,
    folder: Path,
) -> tuple[SubtitleInfo, ...]:
    """Every sidecar file of the item: fetched into ``folder`` when the job keeps it (its
    ``path`` set), else with ``problem`` saying why not; those not wanted as they are.
    When the request's item lists no streams, they are asked for (as the user)."""
    if not _lists_streams(item) and subtitles is not None:
        item = await subtitles.item() or {}
    result = []
    for sub in external_subtitles(item, source):
        if sub.codec not in TEXT and sub.index == chosen:
            result.append(replace(sub, problem="only embedded image subtitles are burned in"))
            continue
        if not wanted(sub, profile, chosen):
            result.append(sub)  # planned as dropped, with the reason
            continue
        problem = None
        if subtitles is None:
            problem = "no Jellyfin token for this source (a mounted folder or standalone)"
        else:
            try:
                data = await subtitles.subtitle(source_id(source, item_id), sub.index, MAX_BYTES)
            except Unavailable as exc:
                problem = str(exc)
            else:
                folder.mkdir(mode=0o700, exist_ok=True)
                path = folder / f"sidecar-{sub.index}.srt"
                path.write_bytes(data)
                result.append(replace(sub, path=str(path)))
                continue
        log.warning("item %s: subtitle %d not fetched: %s", item_id, sub.index, problem)
        result.append(replace(sub, problem=problem))
    return tuple(result)
