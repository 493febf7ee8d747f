"""Encoder backends: how to decode, scale and encode on one kind of device, as YAML data.

The Python side stays generic: ``media.plan.build_argv`` turns a backend, a device and a
profile into an ffmpeg argv. A user's ``backends/`` folder replaces shipped files by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .device import Vendor
from .loader import load_folder

_ARGS = {"type": "array", "items": {"type": "string"}}
_VENDORS = {"type": "array", "items": {"enum": [str(v) for v in Vendor]}}
# Deinterlacing frames in system memory (software decode): Jellyfin's bwdif, all frames.
SOFTWARE_DEINTERLACE = "bwdif=mode={deint_mode}:parity={parity}:deint=all"

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
                # which sources the device tone-mapper takes (tonemap_vaapi: HDR10 on Intel)
                "tonemap_when": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "transfers": {"type": "array", "items": {"enum": ["pq", "hlg"]}},
                        "vendors": _VENDORS,
                        "mastering": {"type": "boolean"},
                    },
                },
                "deinterlace": {"type": "string"},
                "filters": _ARGS,
            },
        },
        "deinterlace": {"type": "string"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
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
                    # option/value pairs for one vendor or VAAPI driver (amd, i965, iHD...):
                    # each replaces the same option in args, or is added
                    "device_args": {"type": "object", "additionalProperties": _ARGS},
                    # aiming at a quality (a profile's target_vmaf): the args with "{quality}"
                    # (absent: the args above, a CRF), the values the search may take (low:
                    # most bits) and its step
                    "target": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["range", "step"],
                        "properties": {
                            "args": _ARGS,
                            "device_args": {"type": "object", "additionalProperties": _ARGS},
                            "range": {
                                "type": "array",
                                "items": {"type": "number", "minimum": 0},
                                "minItems": 2,
                                "maxItems": 2,
                            },
                            "step": {"type": "number", "exclusiveMinimum": 0},
                        },
                    },
                },
            },
        },
    },
}


def _with_traits(
    args: tuple[str, ...], device_args: dict[str, tuple[str, ...]], traits: tuple[str, ...]
) -> tuple[str, ...]:
    """``args`` with the option/value pairs of each matching trait (a device's vendor,
    its VAAPI driver) put in: a pair replaces the same option, or is added."""
    out = list(args)
    for trait in traits:
        extra = device_args.get(trait, ())
        for option, value in zip(extra[::2], extra[1::2], strict=True):
            if option in out:
                out[out.index(option) + 1] = value
            else:
                out += [option, value]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """An encoder aiming at a quality: ``{quality}`` in its args is the searched value."""

    args: tuple[str, ...]
    low: float  # the most bits the search may ask for (CRF 16)
    high: float  # ... and the fewest
    step: float
    device_args: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def args_for(self, traits: tuple[str, ...]) -> tuple[str, ...]:
        return _with_traits(self.args, self.device_args, traits)


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    codec: str  # the ffmpeg encoder, e.g. h264_nvenc
    pix_fmt: str
    args: tuple[str, ...]
    device_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    target: TargetSpec | None = None  # None: this encoder cannot aim at a quality

    def args_for(self, traits: tuple[str, ...]) -> tuple[str, ...]:
        return _with_traits(self.args, self.device_args, traits)


@dataclass(frozen=True, slots=True)
class TonemapWhen:
    transfers: frozenset[str] = frozenset({"pq", "hlg"})
    vendors: frozenset[str] = frozenset()  # empty: every vendor of the backend
    mastering: bool = False  # the source must carry mastering display metadata


@dataclass(frozen=True, slots=True)
class Decode:
    """Hardware decoding: input args, and the filters that keep frames on the device."""

    args: tuple[str, ...]
    codecs: frozenset[str]
    scale: str
    format: str
    tonemap: str | None = None
    filters: tuple[str, ...] = ()
    tonemap_when: TonemapWhen = TonemapWhen()
    deinterlace: str | None = None  # on device frames; None: interlaced sources decode in software


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
    deinterlace: str = SOFTWARE_DEINTERLACE  # on frames in system memory
    env: dict[str, str] = field(default_factory=dict)  # for ffmpeg's process

    @property
    def hardware(self) -> bool:
        return Vendor.CPU not in self.devices

    def preset(self, name: str) -> str:
        """The backend's name for an x264-style preset (medium -> p4 on NVENC)."""
        if not self.presets:
            return name
        return self.presets.get(name, self.presets.get("default", name))


def _tonemap_when(data: dict[str, Any]) -> TonemapWhen:
    return TonemapWhen(
        transfers=frozenset(data.get("transfers", ("pq", "hlg"))),
        vendors=frozenset(data.get("vendors", ())),
        mastering=bool(data.get("mastering", False)),
    )


def _pairs(where: str, spec: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    extra = {k: tuple(v) for k, v in spec.get("device_args", {}).items()}
    for trait, args in extra.items():
        if len(args) % 2:
            raise ConfigError(f"{where}/device_args/{trait}: options and values come in pairs")
    return extra


def _target(where: str, spec: dict[str, Any] | None, args: list[str]) -> TargetSpec | None:
    if spec is None:
        return None
    low, high = spec["range"]
    args = spec.get("args", args)
    if not low < high or "{quality}" not in args:
        raise ConfigError(f"{where}/target: range goes from low to high; args hold {{quality}}")
    return TargetSpec(
        tuple(args),
        low,
        high,
        spec["step"],
        _pairs(f"{where}/target", spec),
    )


def _encoder(backend: str, codec: str, spec: dict[str, Any]) -> EncoderSpec:
    where = f"backend {backend}: encoders/{codec}"
    return EncoderSpec(
        spec["codec"],
        spec["pix_fmt"],
        tuple(spec["args"]),
        _pairs(where, spec),
        _target(where, spec.get("target"), spec["args"]),
    )


def _backend(name: str, data: dict[str, Any]) -> Backend:
    decode = data.get("decode")
    return Backend(
        name=name,
        devices=tuple(Vendor(v) for v in data["devices"]),
        encoders={c: _encoder(name, c, spec) for c, spec in data["encoders"].items()},
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
            tonemap_when=_tonemap_when(decode.get("tonemap_when", {})),
            deinterlace=decode.get("deinterlace"),
        )
        if decode
        else None,
        upload=data.get("upload", ""),
        presets=dict(data.get("presets", {})),
        description=data.get("description", ""),
        deinterlace=data.get("deinterlace", SOFTWARE_DEINTERLACE),
        env=dict(data.get("env", {})),
    )


def load_backends(user_dir: Path | None = None) -> dict[str, Backend]:
    return {
        name: _backend(name, data)
        for name, data in load_folder("backends", BACKEND_SCHEMA, user_dir).items()
    }
