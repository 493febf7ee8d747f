"""Configuration: a YAML file and the environment (which wins), validated once.

Keys in YAML are lower-case (``max_concurrent_jobs``); the environment uses the
upper-case form (``MAX_CONCURRENT_JOBS``), which keeps the original server's names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

# how surround becomes stereo (media/audio.py has the matrices; a test keeps both in step)
DOWNMIXES = ("default", "dave750", "nightmode", "rfc7845")
_TRUE = {"true", "1", "yes", "on"}
SECRET_KEYS = frozenset({"tokens", "metrics_token", "queue_url"})  # values never shown in an error
_FALSE = {"false", "0", "no", "off", ""}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "jellyfin_url": {"type": ["string", "null"], "pattern": "^https?://[^/]+"},
        "max_concurrent_jobs": {"type": "integer", "minimum": 1, "maximum": 64},
        "max_cached_per_user": {"type": "integer", "minimum": 0},
        "time_to_keep_files": {"type": "number", "exclusiveMinimum": 0},
        "remove_file_after_right_download": {"type": "boolean"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "host": {"type": "string", "minLength": 1},
        "cache_dir": {"type": "string", "minLength": 1},
        "data_dir": {"type": "string", "minLength": 1},
        "ffmpeg_path": {"type": ["string", "null"]},
        "default_profile": {"type": "string", "minLength": 1},
        "profiles_dir": {"type": ["string", "null"]},
        "encoder_preference": {"type": "string", "pattern": "^[a-z0-9_-]+(,[a-z0-9_-]+)*$"},
        "hardware_cache": {"type": ["string", "null"]},
        "probe_timeout": {"type": "number", "exclusiveMinimum": 0},
        "fetch_original": {"type": "boolean"},
        "source_allow": {"type": ["string", "null"]},
        "trusted_proxies": {"type": ["string", "null"]},
        "queue_url": {"type": ["string", "null"], "pattern": "^postgres(ql)?://"},
        "worker_heartbeat": {"type": "number", "minimum": 1},
        "local_jobs": {"type": "boolean"},
        "server_cache_dir": {"type": ["string", "null"]},
        "cpu_slots": {"type": ["integer", "null"], "minimum": 1},
        "gpu_slots": {"type": "integer", "minimum": 1},
        "nvenc_sessions": {"type": ["integer", "null"], "minimum": 1},
        "spill_to_cpu": {"type": "boolean"},
        "cpu_high": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "memory_low": {"type": "number", "minimum": 0, "maximum": 100},
        "gpu_high": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "load_hysteresis": {"type": "number", "minimum": 0, "maximum": 50},
        "min_free_space": {"type": "integer", "minimum": 0},
        "load_interval": {"type": "number", "exclusiveMinimum": 0},
        "path_map": {
            "type": ["string", "null"],
            "pattern": "^(/[^=;]*=/[^=;]*)(;/[^=;]*=/[^=;]*)*;?$",
        },
        "stall_timeout": {"type": "number", "exclusiveMinimum": 0},
        "stop_grace": {"type": "number", "exclusiveMinimum": 0},
        "cleanup_interval": {"type": "number", "exclusiveMinimum": 0},
        "removal_grace": {"type": "number", "minimum": 0},
        "auth_cache_ttl": {"type": "number", "minimum": 0},
        "jellyfin_timeout": {"type": "number", "exclusiveMinimum": 0},
        "auth_failure_limit": {"type": "integer", "minimum": 0},
        "max_body_size": {"type": "integer", "minimum": 1024},
        "keepalive_timeout": {"type": "number", "exclusiveMinimum": 0},
        "body_timeout": {"type": "number", "exclusiveMinimum": 0},
        "max_item_size": {"type": "integer", "minimum": 1024},
        "max_queued_per_user": {"type": "integer", "minimum": 0},
        "log_level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
        "downmix": {"enum": list(DOWNMIXES)},
        "base_path": {"type": "string", "pattern": "^(/[A-Za-z0-9._~-]+)*/?$"},
        "access_log": {"type": "boolean"},
        "metrics": {"enum": ["off", "open"]},
        "metrics_token": {"type": ["string", "null"], "minLength": 16},
        "session_ttl": {"type": "number", "exclusiveMinimum": 0},
        "tokens": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["token", "name"],
                "properties": {
                    "token": {"type": "string", "minLength": 16},
                    "name": {"type": "string", "minLength": 1},
                    "admin": {"type": "boolean"},
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class StaticToken:
    token: str
    name: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    jellyfin_url: str | None = None
    max_concurrent_jobs: int = 1
    max_cached_per_user: int = 10
    time_to_keep_files: float = 8.0  # hours
    remove_file_after_right_download: bool = False
    port: int = 3000
    host: str = "0.0.0.0"
    cache_dir: Path = Path("cache")
    data_dir: Path = Path("data")
    ffmpeg_path: str | None = None
    default_profile: str = "h264-1080p"
    profiles_dir: Path | None = None
    encoder_preference: str = "nvenc,qsv,vaapi,software"  # backends, best first
    hardware_cache: Path | None = None  # the probe's answer; default DATA_DIR/hardware.json
    probe_timeout: float = 30.0  # seconds each ffmpeg call of the hardware probe may take
    fetch_original: bool = True  # fetch the original file when the client's URL is a transcode
    source_allow: str | None = None  # standalone: hosts or CIDRs sources may come from
    trusted_proxies: str | None = None  # reverse proxies whose X-Forwarded-For/-Proto count
    queue_url: str | None = None  # PostgreSQL for worker hosts (SAQ); None = this host alone
    worker_heartbeat: float = 5.0  # seconds between a worker's heartbeats; lost after two
    local_jobs: bool = True  # with worker hosts: this server runs jobs on its own devices too
    server_cache_dir: Path | None = None  # a worker host: the server's CACHE_DIR, mounted here
    cpu_slots: int | None = None  # software jobs at once; default one per four cores
    gpu_slots: int = 2  # jobs at once per QSV/VAAPI device
    nvenc_sessions: int | None = None  # NVENC session cap; default from the driver version
    spill_to_cpu: bool = True  # GPU slots full: a job whose profile allows it runs on the CPU
    cpu_high: float = 85.0  # percent (smoothed): no new job at or above it
    memory_low: float = 10.0  # percent of memory available: no new job at or below it
    gpu_high: float = 90.0  # percent NVENC utilisation: no new job on that GPU
    load_hysteresis: float = 10.0  # a held job starts again this far below a threshold
    min_free_space: int = 2 * 1024**3  # bytes free in CACHE_DIR below which jobs wait
    load_interval: float = 2.0  # seconds between load readings
    path_map: str | None = None  # "/media=/mnt/media;...": read sources from mounted folders
    stall_timeout: float = 120.0  # seconds without progress before ffmpeg is killed
    stop_grace: float = 5.0  # seconds between asking ffmpeg to quit and killing it
    cleanup_interval: float = 300.0  # seconds between retention sweeps
    removal_grace: float = 300.0  # seconds a collected file stays for a retried download
    auth_cache_ttl: float = 60.0
    jellyfin_timeout: float = 10.0  # seconds a call to Jellyfin may take (503 after)
    auth_failure_limit: int = 20  # failed authentications per address and minute; 0 = none
    max_body_size: int = 1024 * 1024
    keepalive_timeout: float = 15.0  # an idle connection, or one sending headers, is closed
    body_timeout: float = 30.0  # seconds a request body may take to arrive (408 after)
    max_item_size: int = 64 * 1024  # bytes of a request's item (its JSON), 413 above
    max_queued_per_user: int = 100  # waiting jobs per user, 429 above; 0 = no limit
    log_level: str = "INFO"
    downmix: str = "default"  # surround to stereo: default, dave750, nightmode, rfc7845
    base_path: str = ""  # a reverse proxy's sub-path ("/ovs"); "" = the root
    access_log: bool = True  # False: no access log (polls are logged at DEBUG anyway)
    metrics: str = "off"  # "open": /metrics without a token (a trusted network)
    metrics_token: str | None = None  # a bearer token for /metrics
    session_ttl: float = 7 * 24 * 3600.0  # seconds a page sign-in lasts without use
    tokens: tuple[StaticToken, ...] = field(default_factory=tuple)

    @property
    def hardware_cache_path(self) -> Path:
        return self.hardware_cache or self.data_dir / "hardware.json"

    @property
    def preference(self) -> list[str]:
        return [name.strip() for name in self.encoder_preference.split(",")]

    @property
    def keep_seconds(self) -> float:
        return self.time_to_keep_files * 3600.0


def _env_value(key: str, raw: str, kind: Any) -> Any:
    """Turn an environment string into the type the schema asks for."""
    kinds = kind if isinstance(kind, list) else [kind]
    text = raw.strip()
    if "boolean" in kinds:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{key}={raw!r}: expected a boolean (true/false, 1/0, yes/no)")
    if "integer" in kinds:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected a whole number") from None
    if "number" in kinds:
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}={raw!r}: expected a finite number")
        return number
    if "null" in kinds and text == "":
        return None
    return text


def find_config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The YAML file used without ``--config``: ``CONFIG_FILE``, else ``DATA_DIR/config.yaml``
    when it exists (in Docker, DATA_DIR is a volume: standalone tokens can live there)."""
    env = os.environ if environ is None else environ
    if named := env.get("CONFIG_FILE", "").strip():
        return Path(named).expanduser()
    candidate = Path(env.get("DATA_DIR", "").strip() or "data").expanduser() / "config.yaml"
    return candidate if candidate.is_file() else None


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Merge the YAML file (if any) and the environment; raise ConfigError naming the key."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        data.update(loaded or {})
    origin = {key: f"{path}: {key}" for key in data}
    for key, spec in SCHEMA["properties"].items():
        if key == "tokens":
            continue
        raw = env.get(key.upper())
        if raw is not None:
            data[key] = _env_value(key.upper(), raw, spec.get("type", "string"))
            origin[key] = key.upper()
    for key, value in data.items():  # YAML's .nan and .inf are numbers too
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"invalid configuration: {origin.get(key, key)} = {value}: expected a finite number"
            )
    _normalise(data)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(data)
    )
    if error is not None:
        raise ConfigError(_explain(error, origin))
    return _build(data)


def _explain(error: jsonschema.ValidationError, origin: dict[str, str]) -> str:
    """The key (where it came from), its value and the rule it breaks; never a secret."""
    top = str(error.path[0]) if error.path else ""
    where = origin.get(top, top or "config")
    if top in SECRET_KEYS:  # name the place, never the value
        place = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        return f"invalid configuration: {where}{place[len(top) + 1 :]}: {_rule(error)}"
    value = f" = {error.instance!r}" if error.path else ""
    return f"invalid configuration: {where}{value}: {error.message}"


def _rule(error: jsonschema.ValidationError) -> str:
    """What a secret value fails, without showing it."""
    if error.validator == "minLength":
        return f"shorter than {error.validator_value} characters"
    if error.validator == "required":
        return error.message
    return f"does not satisfy {error.validator} {error.validator_value!r}"


def _normalise(data: dict[str, Any]) -> None:
    """Spellings the schema would refuse but a user means: ``info``, ``NightMode``, ``""``."""
    for key, case in (("log_level", str.upper), ("downmix", str.lower)):
        if isinstance(data.get(key), str):
            data[key] = case(data[key])
    if data.get("jellyfin_url") == "":
        data["jellyfin_url"] = None
    for key in ("metrics_token", "queue_url"):
        if data.get(key) == "":
            data[key] = None
    if isinstance(data.get("metrics"), str):
        data["metrics"] = data["metrics"].lower()
    if isinstance(data.get("base_path"), str):  # "/ovs/" and "ovs" both mean "/ovs"
        stripped = data["base_path"].strip().strip("/")
        data["base_path"] = f"/{stripped}" if stripped else ""


def _build(data: dict[str, Any]) -> Config:
    values = dict(data)
    for key in ("cache_dir", "data_dir", "profiles_dir", "hardware_cache", "server_cache_dir"):
        if values.get(key) is not None:
            values[key] = Path(values[key]).expanduser()
    if values.get("jellyfin_url"):
        values["jellyfin_url"] = values["jellyfin_url"].rstrip("/")
    values["tokens"] = tuple(StaticToken(**t) for t in values.get("tokens", ()))
    return Config(**values)
