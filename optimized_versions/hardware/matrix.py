"""The capability matrix: what each device can really encode and decode (the probe's
answer, see ``prober``), cached on disk as JSON, shown by ``optimized-versions probe``
and ``GET /hardware``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..catalog.device import Device, Vendor


class CheckKind(StrEnum):
    ENCODE = "encode"
    DECODE = "decode"
    DEINTERLACE = "deinterlace"  # hardware decode + the backend's device deinterlacer
    FILTER = "filter"  # a host-wide filter that needs more than the build (libplacebo: Vulkan)


LIBPLACEBO = "libplacebo"  # the FILTER check that Dolby Vision profile 5 needs


@dataclass(frozen=True, slots=True)
class Check:
    device: str
    backend: str
    kind: CheckKind
    codec: str  # h264, hevc, hevc_10bit, av1
    ok: bool
    reason: str  # "works", or why not in plain words
    stderr: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Matrix:
    key: str
    ffmpeg: str
    devices: tuple[Device, ...]
    notes: tuple[str, ...]
    checks: tuple[Check, ...]
    filters: frozenset[str]

    def encodes(self, device: str, backend: str, codec: str) -> bool:
        return self._works(device, backend, CheckKind.ENCODE, codec)

    def decodes(self, device: str, backend: str, codec: str) -> bool:
        return self._works(device, backend, CheckKind.DECODE, codec)

    def deinterlaces(self, device: str, backend: str) -> bool:
        return self._works(device, backend, CheckKind.DEINTERLACE, "h264")

    def filter_check(self, name: str) -> Check | None:
        return next(
            (c for c in self.checks if c.kind is CheckKind.FILTER and c.codec == name), None
        )

    def _works(self, device: str, backend: str, kind: CheckKind, codec: str) -> bool:
        wanted = (device, backend, kind, codec)
        return any(c.ok for c in self.checks if (c.device, c.backend, c.kind, c.codec) == wanted)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ffmpeg": self.ffmpeg,
            "devices": [dataclasses.asdict(d) for d in self.devices],
            "notes": list(self.notes),
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "filters": sorted(self.filters),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Matrix:
        return cls(
            key=data["key"],
            ffmpeg=data["ffmpeg"],
            devices=tuple(Device(**{**d, "vendor": Vendor(d["vendor"])}) for d in data["devices"]),
            notes=tuple(data["notes"]),
            checks=tuple(
                Check(**{**c, "kind": CheckKind(c["kind"]), "stderr": tuple(c["stderr"])})
                for c in data["checks"]
            ),
            filters=frozenset(data["filters"]),
        )

    def table(self) -> str:
        """The matrix as a text table, one line per check, then the devices' notes."""
        rows = [("DEVICE", "BACKEND", "TEST", "CODEC", "RESULT")]
        for c in self.checks:
            rows.append(
                (c.device, c.backend, c.kind, c.codec, "yes" if c.ok else f"no: {c.reason}")
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
        names = [
            f"{d.id}: {d.name}"
            + (f" (driver {d.driver})" if d.driver else "")
            + (f" - {d.problem}" if d.problem else "")
            for d in self.devices
        ]
        return "\n".join(
            [f"ffmpeg: {self.ffmpeg}", *names, "", *lines, *(f"note: {n}" for n in self.notes)]
        )
