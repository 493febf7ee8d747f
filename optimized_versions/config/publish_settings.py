"""The Publishing section: copies made ahead of time by rules and published into Jellyfin as
versions of their items (docs/publishing.md). Declared as ``settings.py`` declares the rest;
``Config`` extends ``PublishSettings``, which extends ``ServingSettings``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .declare import Section
from .serving_settings import ServingSettings, _blank_unsets, _lower

PUBLISHING = Section(
    "Publishing",
    "Copies made ahead of time by rules and published into Jellyfin as versions of their items"
    " (docs/publishing.md). Needs `JELLYFIN_URL` and `JELLYFIN_API_KEY`.",
)
RULE_KINDS = ("next-up", "latest", "favourites", "playlist")
UNTIL_WATCHED = "until-watched"


# one rule, as the YAML file and the Rules page's form give it
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["user", "kind"],
    "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 128},
        "kind": {"enum": list(RULE_KINDS)},
        "count": {"type": "integer", "minimum": 1, "maximum": 100},
        "library": {"type": "string", "minLength": 1, "maxLength": 256},
        "playlist": {"type": "string", "minLength": 1, "maxLength": 256},
        "profile": {"type": "string", "minLength": 1, "maxLength": 64},
        "keep": {
            "description": "until-watched or a number of days from 1 to 3650",
            "oneOf": [
                {"const": UNTIL_WATCHED},
                {"type": "integer", "minimum": 1, "maximum": 3650},
            ],
        },
    },
    "if": {"properties": {"kind": {"const": "playlist"}}},
    "then": {"required": ["playlist"]},
}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule as the YAML file writes it (the Rules page keeps its own in the data folder)."""

    user: str  # the Jellyfin user's name
    kind: str  # RULE_KINDS
    count: int = 1
    library: str | None = None  # a library's name: only its items
    playlist: str | None = None  # kind playlist: the playlist's name
    profile: str | None = None  # DEFAULT_PROFILE when unset
    keep: str | int = UNTIL_WATCHED  # or a number of days


def _label(value: Any) -> str | None:
    """What Jellyfin would read in the label instead of a version's name (VideoListResolver,
    NamingOptions): the publisher checks whole file names again before writing."""
    words = str(value).lower().split()
    for word in words:
        if word in ("sample", "3d", "sbs", "tab", "mvc", "hsbs", "htab", "fsbs", "ftab"):
            return f"{word!r} makes Jellyfin read the file as a sample or a 3D video"
        if (word[:-1].isdigit() and word[-1] in "pi") or word in ("4k", "uhd", "hd", "sd"):
            return f"{word!r} is a resolution token: the copy could sort before the original"
        if word.isdigit() and len(word) == 4:
            return f"{word!r} reads as a second year"
    return None


@dataclass(frozen=True, slots=True)
class PublishSettings(ServingSettings):
    jellyfin_api_key: str | None = PUBLISHING.key(
        None,
        "An API key made in Jellyfin's dashboard (Administration, API Keys): rules read the"
        " users' libraries with it and the server tells Jellyfin about published copies. Sent"
        ' only as `Authorization: MediaBrowser Token="..."`; never logged.',
        secret=True,
        tidy=_blank_unsets,
        minLength=16,
    )
    publish: str = PUBLISHING.key(
        "off",
        "Where a finished rule copy goes: with `alongside`, next to its original under"
        " Jellyfin's version naming; with `library`, into `PUBLISH_DIR`, laid out like the"
        " source library; with `off`, it stays in `CACHE_DIR`.",
        tidy=_lower,
        enum=["off", "alongside", "library"],
    )
    publish_dir: Path | None = PUBLISHING.key(  # noqa: RUF009
        None,
        "With `PUBLISH=library`: the folder (on this host) the copies go to; add it to Jellyfin"
        " as a library the same users can see, and map it in `PATH_MAP`.",
        example="/mnt/media/optimized",
    )
    publish_label: str = PUBLISHING.key(
        "Optimized",
        "The version's name in Jellyfin's version picker (`Film (2020) - Optimized.mp4`).",
        pattern="^[A-Za-z][A-Za-z0-9 ]{0,31}$",
        check=_label,
    )
    publish_max_bytes: int = PUBLISHING.key(
        0,
        "The most bytes all published copies may take together; rules wait at the cap. 0 = no cap.",
        minimum=0,
    )
    rules_interval: float = PUBLISHING.key(
        900.0, "Seconds between two evaluations of the rules.", minimum=5
    )
    watched_grace: float = PUBLISHING.key(
        24.0,
        "Hours a copy kept `until-watched` stays after its user has watched the item.",
        minimum=0,
    )
    rules_while_transcoding: bool = PUBLISHING.key(
        False,
        "False: no rule job starts while Jellyfin is transcoding for a viewer (`/Sessions`):"
        " the same GPU.",
    )
    rules: tuple[RuleSpec, ...] = PUBLISHING.key(
        (),
        "Household rules, a list of `{user, kind, count, library, playlist, profile, keep}`:"
        " `kind` is `next-up` (the next `count` unwatched episodes of each series in progress),"
        " `latest` (the newest `count` films), `favourites` or `playlist`; `keep` is"
        " `until-watched` or a number of days. Users add their own on the Rules page.",
        shown="none",
        example="\n  - {user: alice, kind: next-up, count: 2}"
        "\n  - {user: alice, kind: latest, count: 3, library: Films, keep: 14}",
        env=False,
        items=RULE_SCHEMA,
    )
