"""Output profiles: YAML data, validated when the server starts.

The shipped files live in the package (``optimized_versions/profiles`` and
``backends`` in an installed wheel, the repository's top-level folders in a
checkout); a user folder (``profiles_dir``) holds ``profiles/`` and ``backends/``
whose files replace or add to the shipped ones by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent

PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "container", "video", "audio"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$"},
        "description": {"type": "string"},
        "container": {"const": "mp4"},
        "video": {
            "type": "object",
            "additionalProperties": False,
            "required": ["codec", "max_width", "max_height", "max_bitrate"],
            "properties": {
                "codec": {"enum": ["h264", "hevc"]},
                "max_width": {"type": "integer", "minimum": 16},
                "max_height": {"type": "integer", "minimum": 16},
                "max_bitrate": {"type": "integer", "minimum": 100000},
                "quality": {"type": "integer", "minimum": 0, "maximum": 51},
                "preset": {"type": "string"},
                "copy": {"type": "array", "items": {"type": "string"}},
            },
        },
        "audio": {
            "type": "object",
            "additionalProperties": False,
            "required": ["codec", "channels", "bitrate"],
            "properties": {
                "codec": {"const": "aac"},
                "channels": {"type": "integer", "minimum": 1, "maximum": 8},
                "bitrate": {"type": "integer", "minimum": 32000},
            },
        },
        "hardware": {"enum": ["prefer_hw", "require_hw", "software"]},
        "extra_args": {"type": "array", "items": {"type": "string"}},
    },
}


@dataclass(frozen=True, slots=True)
class VideoSpec:
    codec: str
    max_width: int
    max_height: int
    max_bitrate: int
    quality: int = 23
    preset: str = "medium"
    copy: tuple[str, ...] = ()  # source codecs kept as they are when they fit; () = codec

    @property
    def copy_codecs(self) -> tuple[str, ...]:
        return self.copy or (self.codec,)


@dataclass(frozen=True, slots=True)
class AudioSpec:
    codec: str
    channels: int
    bitrate: int


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    container: str
    video: VideoSpec
    audio: AudioSpec
    description: str = ""
    hardware: str = "prefer_hw"
    extra_args: tuple[str, ...] = ()


def shipped_dir(kind: str) -> Path:
    """Where the shipped YAML files of ``kind`` (profiles/backends) are."""
    installed = _PACKAGE / kind
    return installed if installed.is_dir() else _PACKAGE.parent / kind


def load_folder(kind: str, schema: dict[str, Any], user_dir: Path | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    folders = [shipped_dir(kind)] + ([user_dir / kind] if user_dir else [])
    validator = jsonschema.Draft202012Validator(schema)
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: cannot read: {exc}") from None
            error = jsonschema.exceptions.best_match(validator.iter_errors(data))
            if error is not None:
                key = "/".join(str(p) for p in error.path) or "(top level)"
                raise ConfigError(f"{path}: {key}: {error.message}")
            found[data["name"]] = data
    if not found:
        raise ConfigError(f"no {kind} found in {', '.join(str(f) for f in folders)}")
    return found


def load_profiles(user_dir: Path | None = None) -> dict[str, Profile]:
    return {
        name: Profile(
            name=name,
            container=data["container"],
            video=VideoSpec(**{**data["video"], "copy": tuple(data["video"].get("copy", ()))}),
            audio=AudioSpec(**data["audio"]),
            description=data.get("description", ""),
            hardware=data.get("hardware", "prefer_hw"),
            extra_args=tuple(data.get("extra_args", ())),
        )
        for name, data in load_folder("profiles", PROFILE_SCHEMA, user_dir).items()
    }
