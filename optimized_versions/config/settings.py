"""Every setting, declared once: name and type (the field), default, rules and meaning
(the first sections in ``serving_settings.py``, which ``Config`` extends).

``docs/configuration.md``, ``config.sample.yaml`` and the README's short table are made
from these two files (``python -m optimized_versions.config --write-docs``); the schema that
validates a configuration too (``loading.py``). Meanings are Markdown, one or a few
sentences; ranges and choices are added from the rules, so they are not repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .publish_settings import PublishSettings, RuleSpec
from .serving_settings import (
    ACCESS,
    DOWNMIXES,
    ENCODERS,
    LOAD,
    LOGGING,
    WORKERS,
    _blank_unsets,
    _lower,
    _upper,
)

__all__ = ["DOWNMIXES", "Config", "RuleSpec", "StaticToken"]


@dataclass(frozen=True, slots=True)
class StaticToken:
    token: str
    name: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Config(PublishSettings):
    # (Jellyfin, sources, server, jobs: ServingSettings; publishing: PublishSettings)
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
    sessions_per_user: int = ACCESS.key(
        10,
        "Dashboard sign-ins kept per user; one more signs out that user's least recently used"
        " (never another user's).",
        minimum=1,
    )
    live_streams: int = ACCESS.key(
        4,
        "Live-update streams (`GET /live`) one dashboard session holds open at once; one more"
        " is answered 429 and that page polls `GET /live.json` instead.",
        minimum=1,
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
