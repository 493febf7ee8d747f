"""What a finished run made: the output's size and checksum and how it was made. Built by
the runner here, and rebuilt from a worker host's report (checked: a report is data from
another machine)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from .models import Job

_SHA256 = re.compile(r"[0-9a-f]{64}")


class MalformedReport(ValueError):
    """A worker host's report is not an Outcome."""


@dataclass(frozen=True, slots=True)
class Outcome:
    size: int
    checksum: str
    backend: str
    encoder: str
    decoder: str
    fallbacks: list[str]
    device: str
    tracks: list[dict[str, Any]] = field(
        default_factory=list
    )  # what became of each audio and subtitle track, and why
    plan: str = ""  # what was done per stream, for the pages
    command: list[str] = field(default_factory=list)  # the argv that made it, secrets scrubbed

    def completed(self, job: Job, now: float) -> dict[str, Any]:
        """The job's changes as it becomes ``completed`` (here or from a worker host)."""
        return {
            "progress": 100.0,
            "speed": None,
            "size": self.size,
            "checksum": self.checksum,
            "backend": self.backend,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "fallbacks": [*job.fallbacks, *self.fallbacks],
            "tracks": self.tracks,
            "plan": self.plan,
            "command": self.command,
            "finished_at": now,
        }

    def report(self) -> dict[str, Any]:
        """As a worker host sends it (``from_report`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_report(cls, report: object) -> Outcome:
        """A worker host's report, every field checked for its type."""
        if not isinstance(report, dict):
            raise MalformedReport("not an object")
        names = {f.name for f in dataclasses.fields(cls)}
        if missing := {"size", "checksum", "backend", "encoder", "decoder", "device"} - set(report):
            raise MalformedReport(f"missing {sorted(missing)}")
        if unknown := set(report) - names:
            raise MalformedReport(f"unknown {sorted(unknown)}")
        size = report["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedReport("size is not a byte count")
        if not isinstance(report["checksum"], str) or not _SHA256.fullmatch(report["checksum"]):
            raise MalformedReport("checksum is not a SHA-256")
        for name in ("backend", "encoder", "decoder", "device", "plan"):
            if not isinstance(report.get(name, ""), str):
                raise MalformedReport(f"{name} is not a string")
        for name in ("fallbacks", "command"):
            value = report.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MalformedReport(f"{name} is not a list of strings")
        tracks = report.get("tracks", [])
        if not isinstance(tracks, list) or not all(isinstance(t, dict) for t in tracks):
            raise MalformedReport("tracks is not a list of objects")
        return cls(**{**report, "fallbacks": list(report.get("fallbacks", []))})
