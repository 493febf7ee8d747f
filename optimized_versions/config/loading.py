"""Loading: a YAML file and the environment (which wins), validated once.

Keys in YAML are lower-case (``max_concurrent_jobs``); the environment uses the
upper-case form (``MAX_CONCURRENT_JOBS``), which keeps the original server's names.
Every rule comes from the declaration (``settings.py``): the JSON Schema is made from it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import ConfigError
from .declare import Setting, converts_to_path, declared, item_type
from .settings import Config

SETTINGS: tuple[Setting, ...] = declared(Config)
BY_NAME = {setting.name: setting for setting in SETTINGS}
SECRET_KEYS = frozenset(s.name for s in SETTINGS if s.key.secret)  # never shown in an error
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off", "")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {setting.name: setting.schema for setting in SETTINGS},
}


def _env_value(key: str, raw: str, kind: str | list[str]) -> Any:
    """Turn an environment string into the type the schema asks for."""
    kinds = kind if isinstance(kind, list) else [kind]
    text = raw.strip()
    if "boolean" in kinds:
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
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
    data = _read(path) if path is not None else {}
    origin = {key: f"{path}: {key}" for key in data}
    env = os.environ if environ is None else environ
    for setting in SETTINGS:
        raw = env.get(setting.env_name) if setting.key.env else None
        if raw is not None:
            data[setting.name] = _env_value(setting.env_name, raw, setting.json_type)
            origin[setting.name] = setting.env_name
    _validate(data, origin)
    return _build(data)


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return dict(loaded or {})


def _validate(data: dict[str, Any], origin: dict[str, str]) -> None:
    """Tidy ``data`` in place and check it against the declaration's rules."""
    for key, value in data.items():  # YAML's .nan and .inf are numbers too
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"invalid configuration: {origin.get(key, key)} = {value}: expected a finite number"
            )
    for key, value in data.items():  # spellings a user means: ``info``, ``NightMode``, ``""``
        if key in BY_NAME and (tidy := BY_NAME[key].key.tidy) is not None:
            data[key] = tidy(value)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(data)
    )
    if error is not None:
        raise ConfigError(_explain(error, origin))
    for key, value in data.items():  # what JSON Schema cannot say (a list of networks)
        check = BY_NAME[key].key.check
        if value is not None and check is not None and (problem := check(value)):
            raise ConfigError(f"invalid configuration: {origin[key]} = {value!r}: {problem}")


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


def _build(data: dict[str, Any]) -> Config:
    values = dict(data)
    for key, value in data.items():
        hint = BY_NAME[key].hint
        if value is not None and converts_to_path(hint):
            values[key] = Path(value).expanduser()
        elif (element := item_type(hint)) is not None:
            values[key] = tuple(element(**item) for item in value)
    return Config(**values)
