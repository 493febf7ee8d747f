"""Source URLs: redaction, the JELLYFIN_URL rewrite, the client's audio choice."""

from __future__ import annotations

import pytest

from optimized_versions.jellyfin.sources import original_stream
from optimized_versions.jellyfin.urls import (
    audio_stream_index,
    redact_url,
    rewrite_onto,
    scrub,
    secrets_in,
    subtitle_stream_index,
)


def test_every_credential_is_redacted() -> None:
    url = (
        "http://user:pw@jf:8096/Videos/1/stream?static=false&api_key=A1&ApiKey=A2"
        "&X-Emby-Token=A3&token=A4&MediaSourceId=m&AudioStreamIndex=1"
    )
    redacted = redact_url(url)
    for secret in ("A1", "A2", "A3", "A4", "pw"):
        assert f"={secret}" not in redacted and f":{secret}@" not in redacted
    assert redacted.count("REDACTED") == 5
    assert "MediaSourceId=m" in redacted and "AudioStreamIndex=1" in redacted


def test_scrub_removes_tokens_from_free_text() -> None:
    source = "http://jf/Videos/1/stream?api_key=SECRET123"
    text = f"[http @ 0x1] HTTP error 404 Not Found\n{source}: Server returned 404; key SECRET123"
    cleaned = scrub(text, secrets_in(source))
    assert "SECRET123" not in cleaned and "404" in cleaned


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        (
            "https://public.example/Videos/1/stream?api_key=t",
            "http://jellyfin:8096",
            "http://jellyfin:8096/Videos/1/stream?api_key=t",
        ),
        (
            "https://public.example/Videos/1/stream?a=b",
            "http://jellyfin:8096/jf",
            "http://jellyfin:8096/jf/Videos/1/stream?a=b",
        ),
        (
            "https://public.example/jf/Videos/1/stream?a=b",
            "http://jellyfin:8096/jf",
            "http://jellyfin:8096/jf/Videos/1/stream?a=b",
        ),
        (
            "https://public.example/jfx/Videos/1",
            "http://jellyfin:8096/jf",
            "http://jellyfin:8096/jf/jfx/Videos/1",
        ),
    ],
)
def test_rewrite_keeps_the_jellyfin_prefix(url: str, base: str, expected: str) -> None:
    assert rewrite_onto(url, base) == expected


@pytest.mark.parametrize(
    ("url", "index"),
    [
        ("http://jf/x?AudioStreamIndex=3", 3),
        ("http://jf/x?audiostreamindex=0", 0),
        ("http://jf/x?AudioStreamIndex=two", None),
        ("http://jf/x?AudioStreamIndex=-1", None),
        ("http://jf/x", None),
    ],
)
def test_audio_stream_index(url: str, index: int | None) -> None:
    assert audio_stream_index(url) == index


@pytest.mark.parametrize(
    ("url", "index"),
    [
        ("http://jf/x?SubtitleStreamIndex=4&AudioStreamIndex=1", 4),
        ("http://jf/x?subtitlestreamindex=0", 0),
        ("http://jf/x?SubtitleStreamIndex=-1", None),  # Streamyfin's "no subtitles"
        ("http://jf/x?SubtitleStreamIndex=", None),
        ("http://jf/x?AudioStreamIndex=2", None),
    ],
)
def test_subtitle_stream_index(url: str, index: int | None) -> None:
    assert subtitle_stream_index(url) == index


def test_the_original_stream_keeps_the_subtitle_choice() -> None:
    url = "https://public/videos/abc/master.m3u8?SubtitleStreamIndex=5&api_key=T"
    kept = original_stream(url, "http://jellyfin:8096", "abc", "T")
    assert subtitle_stream_index(kept) == 5
