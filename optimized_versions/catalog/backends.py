"""Encoder backends: how to decode, scale and encode on one kind of device, as YAML data.

The Python side stays generic: ``media.plan.build_argv`` turns a backend, a device and a
profile into an ffmpeg argv. A user's ``backends/`` folder replaces shipped files by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .device import Vendor
from .loader import load_folder

_ARGS = {"type": "array", "items": {"type": "string"}}

BACKEND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "devices", "encoders", "scale", "format"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "description": {"type": "string"},
        "devices": {"type": "array", "minItems": 1, "items": {"enum": [str(v) for v in Vendor]}},
        "init": _ARGS,
        "decode": {
            "type": "object",
            "additionalProperties": False,
            "required": ["args", "codecs", "scale", "format"],
            "properties": {
                "args": _ARGS,
                "codecs": {"type": "array", "items": {"type": "string"}},
                "scale": {"type": "string"},
                "format": {"type": "string"},
                "tonemap": {"type": "string"},
                "filters": _ARGS,
            },
        },
        "scale": {"type": "string"},
        "format": {"type": "string"},
        "upload": {"type": "string"},
        "presets": {"type": "object", "additionalProperties": {"type": "string"}},
        "encoders": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"enum": ["h264", "hevc", "hevc_10bit", "av1"]},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["codec", "pix_fmt", "args"],
                "properties": {
                    "codec": {"type": "string"},
                    "pix_fmt": {"type": "string"},
                    "args": _ARGS,
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    codec: str  # the ffmpeg encoder, e.g. h264_nvenc
    pix_fmt: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decode:
    """Hardware decoding: input args, and the filters that keep frames on the device."""

    args: tuple[str, ...]
    codecs: frozenset[str]
    scale: str
    format: str
    tonemap: str | None = None
    filters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    devices: tuple[Vendor, ...]
    encoders: dict[str, EncoderSpec]
    scale: str  # software scaling (software-decoded frames)
    format: str  # software pixel format conversion
    init: tuple[str, ...] = ()
    decode: Decode | None = None
    upload: str = ""  # how software frames reach the device's encoder
    presets: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def hardware(self) -> bool:
        return Vendor.CPU not in self.devices

    def preset(self, name: str) -> str:
        """The backend's name for an x264-style preset (medium -> p4 on NVENC)."""
        if not self.presets:
            return name
        return self.presets.get(name, self.presets.get("default", name))


def _backend(name: str, data: dict[str, Any]) -> Backend:
    decode = data.get("decode")
    return Backend(
        name=name,
        devices=tuple(Vendor(v) for v in data["devices"]),
        encoders={
            codec: EncoderSpec(spec["codec"], spec["pix_fmt"], tuple(spec["args"]))
            for codec, spec in data["encoders"].items()
        },
        scale=data["scale"],
        format=data["format"],
        init=tuple(data.get("init", ())),
        decode=Decode(
            args=tuple(decode["args"]),
            codecs=frozenset(decode["codecs"]),
            scale=decode["scale"],
            format=decode["format"],
            tonemap=decode.get("tonemap"),
            filters=tuple(decode.get("filters", ())),
        )
        if decode
        else None,
        upload=data.get("upload", ""),
        presets=dict(data.get("presets", {})),
        description=data.get("description", ""),
    )


def load_backends(user_dir: Path | None = None) -> dict[str, Backend]:
    return {
        name: _backend(name, data)
        for name, data in load_folder("backends", BACKEND_SCHEMA, user_dir).items()
    }
