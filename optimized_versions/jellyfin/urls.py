"""Source URLs: redaction of credentials, rewriting onto JELLYFIN_URL, client choices."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query keys that carry a credential in Jellyfin/Emby URLs (compared case-insensitively).
SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "x-emby-token",
        "x-mediabrowser-token",
        "token",
        "access_token",
        "accesstoken",
        "password",
    }
)
REDACTED = "REDACTED"
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL with every credential in its query (and any userinfo) replaced by REDACTED."""
    parts = urlsplit(url)
    query = [
        (key, REDACTED if key.lower() in SECRET_KEYS else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/:,"), ""))


def secrets_in(url: str) -> list[str]:
    """The credential values found in a URL's query, for scrubbing free text."""
    return [
        value
        for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)
        if key.lower() in SECRET_KEYS and value
    ]


def scrub(text: str, secrets: list[str]) -> str:
    """Remove known secret values and redact every URL found in free text (ffmpeg stderr)."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def rewrite_onto(url: str, jellyfin_url: str) -> str:
    """Point a client's Jellyfin URL at JELLYFIN_URL, keeping JELLYFIN_URL's path prefix.

    The phone knows Jellyfin by its public address; this server reaches it by the
    address in JELLYFIN_URL. A request path that already starts with the prefix is
    not prefixed twice (Jellyfin's base URL applies on both sides).
    """
    base = urlsplit(jellyfin_url)
    src = urlsplit(url)
    prefix = base.path.rstrip("/")
    path = src.path if src.path.startswith("/") else f"/{src.path}"
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        path = prefix + path
    return urlunsplit((base.scheme, base.netloc, path, src.query, ""))


def _stream_index(url: str, name: str) -> int | None:
    """A whole-number query value (case-insensitive key); -1 or anything else is None."""
    for key, value in parse_qsl(urlsplit(url).query):
        if key.lower() == name:
            try:
                index = int(value)
            except ValueError:
                return None
            return index if index >= 0 else None
    return None


def audio_stream_index(url: str) -> int | None:
    """The client's AudioStreamIndex query value, if it is a whole number."""
    return _stream_index(url, "audiostreamindex")


def subtitle_stream_index(url: str) -> int | None:
    """The client's SubtitleStreamIndex: the subtitle the user chose; -1 or absent is none."""
    return _stream_index(url, "subtitlestreamindex")
