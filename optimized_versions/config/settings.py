"""Every setting, declared once: name and type (the field), default, rules and meaning.

``docs/configuration.md``, ``config.sample.yaml`` and the README's short table are made
from this file (``python -m optimized_versions.config --write-docs``); the schema that
validates a configuration too (``loading.py``). Meanings are Markdown, one or a few
sentences; ranges and choices are added from the rules, so they are not repeated here.
"""

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
class StaticToken:
    token: str
    name: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Config:
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
    ffmpeg_path: str | None = ENCODERS.key(
        None,
        "Another ffmpeg (6.1 or newer), e.g. jellyfin-ffmpeg.",
        shown="the imageio-ffmpeg binary",
        example="/usr/lib/jellyfin-ffmpeg/ffmpeg",
    )
    encoder_preference: str = ENCODERS.key(
        "nvenc,qsv,vaapi,software",
        "Backends to try, best first, comma-separated without spaces; each must be a backend"
        " loaded.",
        pattern="^[a-z0-9_-]+(,[a-z0-9_-]+)*$",
    )
    hardware_cache: Path | None = ENCODERS.key(  # noqa: RUF009
        None, "Where the probe's answer is kept.", shown="`DATA_DIR/hardware.json`"
    )
    probe_timeout: float = ENCODERS.key(
        30.0,
        "Seconds each ffmpeg call of the hardware probe may take (a hung `FFMPEG_PATH` cannot"
        " hang the start).",
        exclusiveMinimum=0,
    )
    # --- Slots and load ---
    cpu_slots: int | None = LOAD.key(
        None,
        "Software (libx264/x265) jobs at once.",
        shown="one per 4 cores (at least 1)",
        minimum=1,
    )
    gpu_slots: int = LOAD.key(2, "Jobs at once per Intel/AMD device (QSV, VAAPI).", minimum=1)
    nvenc_sessions: int | None = LOAD.key(
        None,
        "NVENC sessions per system, less those other processes hold now.",
        shown="from the driver: 3 (< 530), 5 (530-549), 8 (550-589), 12 (590+)",
        minimum=1,
    )
    spill_to_cpu: bool = LOAD.key(
        True,
        "When every GPU slot is busy, a job whose profile allows software runs on the CPU.",
    )
    cpu_high: float = LOAD.key(
        85.0,
        "No new job while the host's CPU (smoothed) is at or above this percent.",
        exclusiveMinimum=0,
        maximum=100,
    )
    memory_low: float = LOAD.key(
        10.0,
        "No new job while available memory is at or below this percent.",
        minimum=0,
        maximum=100,
    )
    gpu_high: float = LOAD.key(
        90.0,
        "No new job on an NVIDIA GPU whose encoder is at or above this percent.",
        exclusiveMinimum=0,
        maximum=100,
    )
    load_hysteresis: float = LOAD.key(
        10.0,
        "A held job starts again only this many points below a threshold.",
        minimum=0,
        maximum=50,
    )
    min_free_space: int = LOAD.key(
        2 * 1024**3, "Bytes free in `CACHE_DIR` below which jobs wait.", minimum=0
    )
    load_interval: float = LOAD.key(
        2.0, "Seconds between load readings (psutil, NVML).", exclusiveMinimum=0
    )
    # --- Access ---
    auth_failure_limit: int = ACCESS.key(
        20,
        "Failed tokens or sign-ins per client address and minute before 429 (Jellyfin is not"
        " asked then); 0 = no limit.",
        minimum=0,
    )
    session_ttl: float = ACCESS.key(
        7 * 24 * 3600.0,
        "Seconds a dashboard sign-in lasts without use (sessions live in memory: a restart"
        " signs everyone out).",
        exclusiveMinimum=0,
    )
    metrics: str = ACCESS.key(
        "off",
        "With `open`, `GET /metrics` needs no token (a trusted network only); with `off` it"
        " needs `METRICS_TOKEN`, and is off without one.",
        tidy=_lower,
        enum=["off", "open"],
    )
    metrics_token: str | None = ACCESS.key(
        None,
        "Turns `GET /metrics` on, for `Authorization: Bearer <token>`.",
        secret=True,
        tidy=_blank_unsets,
        minLength=16,
    )
    tokens: tuple[StaticToken, ...] = ACCESS.key(
        (),
        "Standalone mode only: the tokens phones and the dashboard use, a list of"
        " `{token, name, admin}` (a token has 16 characters or more); without any, an admin"
        " token is made at the first start and kept in `DATA_DIR/admin-token`.",
        shown="none",
        example='\n  - {token: "a-long-random-admin-token", name: admin, admin: true}'
        '\n  - {token: "another-long-random-token", name: alice}',
        secret=True,
        env=False,
        items={
            "type": "object",
            "additionalProperties": False,
            "required": ["token", "name"],
            "properties": {
                "token": {"type": "string", "minLength": 16},
                "name": {"type": "string", "minLength": 1},
                "admin": {"type": "boolean"},
            },
        },
    )
    # --- Worker hosts ---
    queue_url: str | None = WORKERS.key(
        None,
        "PostgreSQL for worker hosts (`postgresql://user:password@host/db`); never shown in an"
        " error.",
        shown="unset (this host alone)",
        secret=True,
        tidy=_blank_unsets,
        pattern="^postgres(ql)?://",
    )
    worker_heartbeat: float = WORKERS.key(
        5.0,
        "Seconds between a worker host's heartbeats; one unheard of for two is lost and its"
        " jobs go back to the queue.",
        minimum=1,
    )
    local_jobs: bool = WORKERS.key(
        True,
        "With worker hosts: false keeps this server's own devices out (it only serves and"
        " dispatches).",
    )
    server_cache_dir: Path | None = WORKERS.key(  # noqa: RUF009
        None,
        "On a worker host: the server's `CACHE_DIR` as mounted here; the output is written"
        " there instead of uploaded.",
    )
    # --- Logging ---
    log_level: str = LOGGING.key(
        "INFO", "How much is logged.", tidy=_upper, enum=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    access_log: bool = LOGGING.key(
        True,
        "False: no access log. Either way a successful poll (`GET /job-status`, `/all-jobs`,"
        " `/statistics`, `/health`, `/metrics`, `/hardware`: Streamyfin polls every 2 s) is"
        " logged at DEBUG, everything else at INFO.",
    )

    @property
    def hardware_cache_path(self) -> Path:
        return self.hardware_cache or self.data_dir / "hardware.json"

    @property
    def preference(self) -> list[str]:
        return [name.strip() for name in self.encoder_preference.split(",")]

    @property
    def keep_seconds(self) -> float:
        return self.time_to_keep_files * 3600.0
