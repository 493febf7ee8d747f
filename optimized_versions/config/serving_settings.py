"""The settings of the first sections (Jellyfin, sources, the server, jobs), declared as
``settings.py`` declares the rest (see there): ``Config`` extends ``ServingSettings``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .declare import Section

# Each field's default is ``SECTION.key(default, meaning, **rules)``: a dataclasses.field()
# carrying the declaration. ruff's RUF009 takes it for a shared mutable default where the
# type is not one it knows to be immutable (Path): it is not, hence the noqa on those lines.

# how surround becomes stereo (media/audio.py has the matrices; a test keeps both in step)
DOWNMIXES = ("default", "dave750", "nightmode", "rfc7845")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _blank_unsets(value: Any) -> Any:
    return None if value == "" else value


def _url(value: Any) -> Any:
    if value == "":
        return None
    return value.rstrip("/") or value if isinstance(value, str) else value


def _base_path(value: Any) -> Any:
    """``/ovs/``, ``ovs`` and `` /ovs`` all mean ``/ovs``; ``/`` means the root."""
    if not isinstance(value, str):
        return value
    stripped = value.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def _networks(value: Any) -> str | None:
    for entry in filter(None, (part.strip() for part in str(value).split(","))):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return f"{entry!r} is not an IP address or network"
    return None


JELLYFIN = Section(
    "Jellyfin", "Where users and sources come from. Unset, the server runs standalone."
)
SOURCES = Section("Sources", "Where a job's input is read from, and where it may come from.")
SERVER = Section("Server", "Where it listens and keeps its files, and the limits on a request.")
JOBS = Section("Jobs", "How many run, what they make, and how long their files are kept.")
ENCODERS = Section("Encoders", "Which ffmpeg, which backends, and the hardware probe.")
LOAD = Section("Slots and load", "How much of the machine jobs may take (docs/hardware.md).")
ACCESS = Section("Access", "Sign-in, dashboard sessions, metrics, and standalone tokens.")
WORKERS = Section(
    "Worker hosts", "Other machines taking jobs through SAQ on PostgreSQL (docs/workers.md)."
)
LOGGING = Section("Logging")


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """Jellyfin, sources, the server and jobs (the first sections, in their order)."""

    # --- Jellyfin ---
    jellyfin_url: str | None = JELLYFIN.key(
        None,
        "Jellyfin as this host reaches it, with any base path"
        " (`http://jellyfin:8096/jellyfin`). Users' tokens are checked against it, and source"
        " URLs are rewritten onto it.",
        shown="unset (standalone)",
        example="http://jellyfin:8096",
        common=True,
        tidy=_url,
        pattern="^https?://[^/]+",
    )
    jellyfin_timeout: float = JELLYFIN.key(
        10.0, "Seconds a call to Jellyfin may take before 503.", exclusiveMinimum=0
    )
    auth_cache_ttl: float = JELLYFIN.key(
        60.0,
        "Seconds a good Jellyfin answer is cached (keyed by a SHA-256 of the token).",
        minimum=0,
    )
    # --- Sources ---
    fetch_original: bool = SOURCES.key(
        True,
        "When the phone's URL is a Jellyfin transcode (`static=false`, `*.m3u8`), fetch the"
        " original file instead (keeping `MediaSourceId` and `AudioStreamIndex`); false uses"
        " the phone's URL as given.",
    )
    path_map: str | None = SOURCES.key(
        None,
        "`/media=/mnt/media;/tv=/srv/tv`: read a source straight from a mounted folder when"
        " Jellyfin's path for the item maps onto a file there.",
        example="/media=/mnt/media",
        pattern="^(/[^=;]*=/[^=;]*)(;/[^=;]*=/[^=;]*)*;?$",
    )
    source_allow: str | None = SOURCES.key(
        None,
        "Standalone mode: the hosts or CIDRs sources may come from"
        " (`10.0.0.5, nas.lan, 192.168.1.0/24`); link-local and cloud metadata addresses are"
        " refused always, and with `JELLYFIN_URL` only Jellyfin's origin is fetched.",
        shown="unset (any host)",
    )
    # --- Server ---
    host: str = SERVER.key("0.0.0.0", "The address to listen on.", minLength=1)
    port: int = SERVER.key(3000, "The port to listen on.", minimum=1, maximum=65535)
    base_path: str = SERVER.key(
        "",
        "Serve everything (API, pages, `/health`, `/metrics`) under a sub-path such as `/ovs`,"
        " behind a reverse proxy that keeps the prefix (docs/deploying.md); `ovs`, `/ovs` and"
        " `/ovs/` mean the same.",
        shown="unset (the root)",
        tidy=_base_path,
        pattern="^(/[A-Za-z0-9._~-]+)*/?$",
    )
    cache_dir: Path = SERVER.key(  # noqa: RUF009
        Path("cache"),
        "Finished outputs (`<job id>.mp4`); in the images `/cache`.",
        common=True,
        minLength=1,
    )
    data_dir: Path = SERVER.key(  # noqa: RUF009
        Path("data"),
        "The data folder (made 0700): `jobs.sqlite3`, the standalone admin token, worker"
        " tokens, the probe's answer; in the images `/data`, where a `config.yaml` is read"
        " without flags.",
        minLength=1,
    )
    trusted_proxies: str | None = SERVER.key(
        None,
        "The reverse proxies (addresses or CIDRs: `127.0.0.1, 172.16.0.0/12`) whose"
        " `X-Forwarded-For` and `X-Forwarded-Proto` are believed: failed sign-ins then count"
        " per real client, and the session cookie is `Secure` when the browser used HTTPS.",
        shown="unset (none)",
        check=_networks,
    )
    keepalive_timeout: float = SERVER.key(
        15.0,
        "Seconds an idle connection, or one whose request headers are not complete, stays open.",
        exclusiveMinimum=0,
    )
    body_timeout: float = SERVER.key(
        30.0, "Seconds a request body may take to arrive (408 after).", exclusiveMinimum=0
    )
    max_body_size: int = SERVER.key(
        1024 * 1024, "Largest request body in bytes (413 above it).", minimum=1024
    )
    max_item_size: int = SERVER.key(
        64 * 1024,
        "Largest `item` in a request, in bytes of its JSON (413 above it).",
        minimum=1024,
    )
    # --- Jobs ---
    max_concurrent_jobs: int = JOBS.key(
        1,
        "Transcodes running at once, over every device's slots.",
        active=True,
        common=True,
        minimum=1,
        maximum=64,
    )
    max_cached_per_user: int = JOBS.key(
        10,
        "Completed but not yet collected outputs per device (its running jobs count too)"
        " before that device's new jobs wait as `pending downloads limit`; 0 = no limit.",
        minimum=0,
    )
    max_queued_per_user: int = JOBS.key(
        100,
        "A user's waiting jobs before a new request answers 429; 0 = no limit.",
        minimum=0,
    )
    time_to_keep_files: float = JOBS.key(
        8.0,
        "Hours a finished job (and its file) is kept.",
        active=True,
        common=True,
        exclusiveMinimum=0,
    )
    remove_file_after_right_download: bool = JOBS.key(
        False,
        "A download that delivered the file's last byte counts as collection (as cancel-job does).",
    )
    removal_grace: float = JOBS.key(
        300.0,
        "Seconds a collected output stays downloadable (a retried download still works).",
        minimum=0,
    )
    cleanup_interval: float = JOBS.key(
        300.0, "Seconds between retention sweeps.", exclusiveMinimum=0
    )
    default_profile: str = JOBS.key(
        "h264-1080p",
        "The profile used when a request names none (shipped: `h264-1080p`, `h264-720p`,"
        " `hevc-1080p`, `copy`); it must be one of the profiles loaded.",
        common=True,
        minLength=1,
    )
    profiles_dir: Path | None = JOBS.key(  # noqa: RUF009
        None,
        "A folder with `profiles/` and `backends/` whose YAML files replace or add to the"
        " shipped ones.",
    )
    downmix: str = JOBS.key(
        "default",
        "How surround becomes stereo (Jellyfin's choices): `default` (FFmpeg's matrix),"
        " `dave750` (Dave_750's: fronts and surrounds at 0.707, centre and LFE at half),"
        " `nightmode` (the centre at full level, fronts and surrounds at 0.3: dialogue over"
        " effects), `rfc7845` (the Opus matrix); every one is folded in float and limited at"
        " -1 dBFS, so loud scenes never clip.",
        tidy=_lower,
        enum=list(DOWNMIXES),
    )
    stall_timeout: float = JOBS.key(
        120.0,
        "Seconds without progress before ffmpeg is killed and the job fails.",
        exclusiveMinimum=0,
    )
    stop_grace: float = JOBS.key(
        5.0,
        "Seconds between asking ffmpeg to quit (`q`) and killing it.",
        exclusiveMinimum=0,
    )
    # --- Encoders ---
