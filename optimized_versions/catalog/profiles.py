"""Output profiles: YAML data (codec, size cap, bit rate, audio), validated at start."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .loader import load_folder


class HardwarePolicy(StrEnum):
    """Where a profile's video may be encoded."""

    PREFER_HW = "prefer_hw"  # the best hardware encoder, the CPU when none works or is free
    REQUIRE_HW = "require_hw"  # hardware only: fail rather than use the CPU
    SOFTWARE = "software"  # the CPU only


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
                # interlaced sources: one frame per frame (25i -> 25p) or per field (-> 50p)
                "deinterlace": {"enum": ["frame", "field"]},
                # per title: the rate-control value that reaches this VMAF with the fewest
                # bits (media/target.py); the model it and the measurement use
                "target_vmaf": {"type": "number", "minimum": 50, "maximum": 99},
                "vmaf_model": {"enum": ["default", "phone"]},
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
                # which audio tracks the copy keeps (the chosen one is first and default)
                "tracks": {"enum": ["chosen", "all", "chosen+original"]},
            },
        },
        # text subtitles kept as soft tracks: every one, or the chosen (and forced) ones
        "subtitles": {"enum": ["chosen", "all"]},
        "hardware": {"enum": [str(p) for p in HardwarePolicy]},
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
    deinterlace: str = "frame"  # "field": 50i/60i become 50p/60p (sport)
    target_vmaf: float | None = None  # None: the fixed quality/bit rate above
    vmaf_model: str = "default"  # "phone": VMAF's phone transform (a small screen, near)

    @property
    def copy_codecs(self) -> tuple[str, ...]:
        return self.copy or (self.codec,)


@dataclass(frozen=True, slots=True)
class AudioSpec:
    codec: str
    channels: int
    bitrate: int
    tracks: str = "chosen"  # "all", "chosen+original"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    container: str
    video: VideoSpec
    audio: AudioSpec
    description: str = ""
    hardware: HardwarePolicy = HardwarePolicy.PREFER_HW
    extra_args: tuple[str, ...] = ()
    subtitles: str = "all"  # text subtitles kept: "all" or "chosen"


def load_profiles(user_dir: Path | None = None) -> dict[str, Profile]:
    return {
        name: Profile(
            name=name,
            container=data["container"],
            video=VideoSpec(**{**data["video"], "copy": tuple(data["video"].get("copy", ()))}),
            audio=AudioSpec(**data["audio"]),
            description=data.get("description", ""),
            hardware=HardwarePolicy(data.get("hardware", "prefer_hw")),
            extra_args=tuple(data.get("extra_args", ())),
            subtitles=data.get("subtitles", "all"),
        )
        for name, data in load_folder("profiles", PROFILE_SCHEMA, user_dir).items()
    }
