"""Where a job reads its source from.

The phone asks Jellyfin for what it would play itself, often a transcode (``static=false``,
``master.m3u8``). Transcoding that again here would cost quality and Jellyfin's CPU, so
with JELLYFIN_URL set the server fetches the original stream instead (keeping the client's
MediaSourceId and audio choice), or, with PATH_MAP, reads the file from a mounted folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ..config import Config
from .client import JellyfinClient
from .urls import rewrite_onto, secrets_in

log = logging.getLogger(__name__)

_VIDEO_ID = re.compile(r"/videos/([^/]+)/", re.IGNORECASE)
_KEEP = ("mediasourceid", "audiostreamindex", "subtitlestreamindex")


def is_transcode(url: str) -> bool:
    """True when the URL asks Jellyfin to transcode rather than send the file as it is."""
    parts = urlsplit(url)
    if parts.path.lower().endswith(".m3u8"):
        return True
    query = {k.lower(): v for k, v in parse_qsl(parts.query)}
    return query.get("static", "").lower() != "true"


def original_stream(url: str, jellyfin_url: str, item_id: str, token: str) -> str:
    """Jellyfin's URL for the original file of the item the client's URL names."""
    parts = urlsplit(url)
    match = _VIDEO_ID.search(parts.path)
    video_id = match.group(1) if match else item_id
    query = [("static", "true")]
    query += [(k, v) for k, v in parse_qsl(parts.query) if k.lower() in _KEEP]
    query.append(("api_key", token))
    return f"{jellyfin_url}/Videos/{quote(video_id, safe='')}/stream?{urlencode(query)}"


def parse_path_map(text: str | None) -> list[tuple[str, Path]]:
    """``/media=/mnt/media;/tv=/srv/tv`` -> [(jellyfin prefix, local folder)]."""
    pairs = []
    for entry in (text or "").split(";"):
        if entry.strip():
            remote, _, local = entry.partition("=")
            pairs.append((remote.rstrip("/") + "/", Path(local)))
    return pairs


def map_path(path: str, mappings: list[tuple[str, Path]]) -> Path | None:
    """The local file for a path on the Jellyfin server, if it maps and stays inside."""
    for remote, local in mappings:
        if path.startswith(remote):
            candidate = (local / path[len(remote) :]).resolve()
            if candidate.is_relative_to(local.resolve()) and candidate.is_file():
                return candidate
    return None


async def item_paths(
    client: JellyfinClient, user_id: str, item_id: str, token: str
) -> dict[str, str]:
    """Media source id -> file path, as Jellyfin tells this user (it enforces access)."""
    item = await client.item(user_id, item_id, token)
    sources = item.get("MediaSources") if item is not None else None
    return {
        str(s.get("Id")): s["Path"]
        for s in sources or []
        if isinstance(s, dict) and isinstance(s.get("Path"), str)
    }


async def choose_source(
    url: str,
    item_id: str,
    user_id: str,
    caller_token: str,
    config: Config,
    client: JellyfinClient | None,
) -> str:
    """The URL (or local path) the job will read; the client's URL when nothing better."""
    jellyfin = config.jellyfin_url
    if jellyfin is None:
        return url
    token = next(iter(secrets_in(url)), caller_token)
    mappings = parse_path_map(config.path_map)
    if mappings and client is not None:
        paths = await item_paths(client, user_id, item_id, token)
        wanted = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query)}.get("mediasourceid")
        for source_id, remote in paths.items():
            if wanted in (None, source_id) and (local := map_path(remote, mappings)):
                log.info("item %s: reading %s from the mounted media folder", item_id, local)
                return str(local)
    if config.fetch_original and is_transcode(url):
        return original_stream(url, jellyfin, item_id, token)
    return rewrite_onto(url, jellyfin)
