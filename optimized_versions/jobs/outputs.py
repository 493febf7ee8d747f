"""One output for every record of a key: what decides an output's bytes, as a key.

Records of one key (a phone's request, a rule job, another user's request for the same
media source, profile and track choice) share one file: one run makes it (the *maker*),
the others wait on that run or take its finished output (``lifecycle``). The key holds
everything the runner reads that changes what it writes:

- the source: the media source the URL names (``MediaSourceId``, else the ``/Videos/{id}/``
  of its path, else the request's ``itemId``) on the origin the server reads it from (after
  the rewrite onto JELLYFIN_URL, so a phone's public host and the server's are one), or
  the mounted file (PATH_MAP); a Jellyfin transcode read as it is (``static=false`` without
  FETCH_ORIGINAL) adds its path and whole query: Jellyfin's parameters change its bytes;
- the profile (by name);
- the audio and subtitle choice (``AudioStreamIndex``, ``SubtitleStreamIndex``: from the
  source URL, else the client's own URL, as the runner reads them);
- the file's title (the item's ``Name``, written into the output).

Credentials never enter it (a token differs per user, not the bytes).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..jellyfin.sources import is_transcode
from ..jellyfin.urls import SECRET_KEYS, audio_stream_index, subtitle_stream_index

VERSION = 1  # a change of what the key holds: a new version (old copies are not matched)
_VIDEO_ID = re.compile(r"/videos/([^/]+)/", re.IGNORECASE)


def _choice(index: int | None, fallback: int | None) -> int | None:
    return index if index is not None else fallback


def output_key(
    source: str, input_url: str, item_id: str, profile: str, item: dict[str, Any]
) -> str:
    """The key of a job's output: ``source`` as the job will read it (``choose_source``),
    ``input_url`` the client's URL (redacted), the profile's name, the client's item."""
    parts = urlsplit(source)
    if parts.scheme in ("http", "https"):
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        wanted = {k.lower(): v for k, v in query}
        match = _VIDEO_ID.search(parts.path)
        video = match.group(1) if match else item_id
        origin: dict[str, Any] = {
            "origin": f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower(),
            "media": wanted.get("mediasourceid") or video,
        }
        if is_transcode(source):  # Jellyfin's own transcode: its parameters are the bytes
            origin["path"] = parts.path
            origin["query"] = sorted((k, v) for k, v in query if k.lower() not in SECRET_KEYS)
    else:
        origin = {"file": source}
    name = item.get("Name")
    fields = {
        "v": VERSION,
        **origin,
        "profile": profile,
        "audio": _choice(audio_stream_index(source), audio_stream_index(input_url)),
        "subtitle": _choice(subtitle_stream_index(source), subtitle_stream_index(input_url)),
        "title": name if isinstance(name, str) else None,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return f"{VERSION}:{hashlib.sha256(text.encode()).hexdigest()}"


def video_id(source: str, item_id: str) -> str:
    """The Jellyfin item a source URL reads (its ``/Videos/{id}/``), else ``item_id``:
    what a user must be allowed to see to share another's output of it."""
    match = _VIDEO_ID.search(urlsplit(source).path)
    return match.group(1) if match else item_id
