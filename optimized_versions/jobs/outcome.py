"""What a finished run made: the output's size and checksum and how it was made. Built by
the runner here, and rebuilt from a worker host's report (checked: a report is data from
another machine)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from .models import Job


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
    # VMAF measured on sampled windows, and the quality search's pick (media/quality.py,
    # media/target.py); None for a copy (nothing was encoded)
    quality: dict[str, Any] | None = None

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
            "quality": self.quality,
            "finished_at": now,
        }

    def report(self) -> dict[str, Any]:
        """As a worker host sends it (``from_report`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_report(cls, report: object) -> Outcome:
        """A worker host's report, held against REPORT (types, bounds, known fields)."""
        if problem := schema_problem(_REPORT, report, "the report"):
            raise MalformedReport(problem)
        assert isinstance(report, dict)
        return cls(**{"fallbacks": [], **report})


def schema_problem(validator: jsonschema.protocols.Validator, data: Any, what: str) -> str | None:
    """What is wrong with ``data`` (from another machine) by ``validator``'s schema, named
    by its place (``what.devices[0].used: ...``), or None; the message bounded."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
    return f"{what}{where}: {error.message[:200]}"


_TEXT = {"type": "string", "maxLength": 8_000}
_WORD = {"type": "string", "maxLength": 200}
_WORDS = {"type": "array", "maxItems": 512, "items": _TEXT}
TRACK = {  # media/tracks.py Track.to_api, as the job page and /job-status show it
    "type": "object",
    "required": ["type", "index", "codec", "action", "reason"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["audio", "subtitle"]},
        "index": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
        "codec": _WORD,
        "action": {"enum": ["copy", "convert", "burn", "drop"]},
        "reason": _TEXT,
        "outputCodec": _WORD,
        "language": _WORD,
        "title": _TEXT,
        "default": {"type": "boolean"},
        "forced": {"type": "boolean"},
        "external": {"type": "boolean"},
    },
}
_SCORE = {"type": "number", "minimum": 0, "maximum": 100}
QUALITY = {  # jobs/assess.py: Quality.to_api and Pick.to_api, as the job shows them; or none
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "metric": {"const": "vmaf"},
        "model": {"enum": ["default", "phone"]},
        "mean": _SCORE,
        "worstWindow": _SCORE,
        "worstWindowAt": {"type": "number", "minimum": 0, "maximum": 1e7},
        "p5": _SCORE,
        "secondsSampled": {"type": "number", "minimum": 0, "maximum": 1e7},
        "frames": {"type": "integer", "minimum": 0, "maximum": 1e9},
        "unmeasured": _TEXT,
        "target": _SCORE,
        "setting": _WORD,
        "sampledVmaf": _SCORE,
        "probes": {"type": "integer", "minimum": 0, "maximum": 100},
        "note": _TEXT,
    },
}
REPORT = {
    "type": "object",
    "required": ["size", "checksum", "backend", "encoder", "decoder", "device"],
    "additionalProperties": False,
    "properties": {
        "size": {"type": "integer", "minimum": 0, "maximum": 2**53},
        "checksum": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "backend": _WORD,
        "encoder": _WORD,
        "decoder": _WORD,
        "device": _WORD,
        "fallbacks": _WORDS,
        "tracks": {"type": "array", "maxItems": 256, "items": TRACK},
        "plan": _TEXT,
        "command": _WORDS,
        "quality": QUALITY,
    },
}
_REPORT = jsonschema.Draft202012Validator(REPORT)
