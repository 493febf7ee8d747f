"""External subtitles (Jellyfin sidecar files): which ones a job needs, fetched through the
Jellyfin client with the user's token into the job's temp folder, so that ffmpeg reads a
local file and never sees a token."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..catalog.profiles import Profile
from ..errors import Unavailable
from ..jellyfin.client import JellyfinClient
from ..jellyfin.urls import secrets_in
from ..media.probe import SubtitleInfo
from ..media.tracks import TEXT

log = logging.getLogger(__name__)

SUFFIX = ".subs"  # the folder of a job's fetched sidecar files: "<output>.subs"
MAX_BYTES = 16 * 1024 * 1024  # a film's subtitles are kilobytes; more is not a subtitle
# Jellyfin's codec names for sidecar files, as FFmpeg names them
_CODECS = {"srt": "subrip", "vtt": "webvtt", "pgssub": "hdmv_pgs_subtitle", "sub": "dvd_subtitle"}


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


def sidecar_folder(output: Path) -> Path:
    """Where a job's sidecar files wait for ffmpeg: beside its output, removed after."""
    return output.with_name(output.name + SUFFIX)


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
    client: JellyfinClient | None,
    owner_id: str,
    item_id: str,
    item: dict[str, Any],
    source: str,
    profile: Profile,
    chosen: int | None,
    folder: Path,
) -> tuple[SubtitleInfo, ...]:
    """Every sidecar file of the item: fetched into ``folder`` when the job keeps it (its
    ``path`` set), else with ``problem`` saying why not; those not wanted as they are.
    When the request's item lists no streams, Jellyfin is asked for them (as the user)."""
    token = next(iter(secrets_in(source)), None)
    source_id = _query(source, "mediasourceid") or item_id
    if not _lists_streams(item) and client is not None and token is not None:
        item = await client.item(owner_id, item_id, token) or {}
    result = []
    for sub in external_subtitles(item, source):
        if sub.codec not in TEXT and sub.index == chosen:
            result.append(replace(sub, problem="only embedded image subtitles are burned in"))
            continue
        if not wanted(sub, profile, chosen):
            result.append(sub)  # planned as dropped, with the reason
            continue
        problem = None
        if client is None or token is None:
            problem = "no Jellyfin token for this source (a mounted folder or standalone)"
        else:
            try:
                data = await client.subtitle(item_id, source_id, sub.index, token, MAX_BYTES)
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
