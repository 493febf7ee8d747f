"""Everything a worker host sends through the queue proxy, checked at the boundary.

A worker host is another machine: what it says is data, never trusted as code would be.
Each request is parsed as strict JSON (no NaN or Infinity), then held against a schema of
what SAQ's HttpQueue sends for its kind: numbers finite and in range, strings and lists
bounded, no field SAQ does not send. The job inside (SAQ's own JSON, as a string) and our
parts of it (the heartbeat's description, a progress report) are checked the same way. A
message that fails is refused whole (400, ``Malformed``), and the node that sent it is
marked unhealthy (``nodes/fleet.py``): its problem, never everyone's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
from saq import Status

from ..errors import BadRequest
from ..jobs.outcome import schema_problem

MAX_TEXT = 8_000  # a plan's words, an error message
MAX_DEVICES = 64
MAX_SLOTS = 1_024
MAX_BYTES = 2**53  # a file's size (what JSON numbers hold exactly)

_NAME = {"type": "string", "maxLength": 200}
_TEXT = {"type": ["string", "null"], "maxLength": MAX_TEXT}
_SECONDS = {"type": "number", "minimum": 0, "maximum": 86_400}
_STATUS = {"enum": [None, *(str(s.value) for s in Status)]}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_SLOTS}
_JOB = {"type": "string", "maxLength": 1_000_000}  # SAQ's job, as JSON: checked apart


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


DEVICE = _object(
    {
        "id": {"type": "string", "minLength": 1, "maxLength": 64},
        "vendor": {"enum": ["cpu", "nvidia", "intel", "amd"]},
        "name": {"type": "string", "maxLength": 200},
        "slots": _COUNT,
        "used": _COUNT,
    },
    ("id", "vendor", "slots", "used"),
)
INFO = _object(  # our part of SAQ's worker_info: what the host tells of itself
    {
        "version": {"type": "string", "maxLength": 64},
        "best": {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"pattern": "^[a-z0-9]{1,16}$"},
            "additionalProperties": {"type": "string", "pattern": "^[a-z0-9_]{1,32}$"},
        },
        "slots": _COUNT,
        "busy": _TEXT,
        "devices": {"type": "array", "maxItems": MAX_DEVICES, "items": DEVICE},
    },
    ("slots", "devices"),
)
PROGRESS = _object(  # a job's ``meta`` in an update: what the phone shows
    {
        "percent": {"type": "number", "minimum": 0, "maximum": 100},
        "speed": {"type": ["number", "null"], "minimum": 0, "maximum": 10_000},
        "size": {"type": "integer", "minimum": 0, "maximum": MAX_BYTES},
        "frames": {"type": "integer", "minimum": 0, "maximum": 10**9},
        "plan": _TEXT,
        "waiting": _TEXT,
    },
)
SAQ_JOB = {  # SAQ's fields are SAQ's (its own parsing follows); ours are held to ours
    "type": "object",
    "required": ["queue", "key", "function"],
    "properties": {
        "queue": _NAME,
        "key": _NAME,
        "function": {"const": "transcode"},
        "kwargs": {
            "type": "object",
            "properties": {"job": {"type": "object", "properties": {"id": _NAME}}},
        },
        "meta": {"type": "object"},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "result": {"type": ["object", "null"]},
        "error": _TEXT,
        "status": _STATUS,
    },
}
_KINDS = {  # what SAQ 0.26's HttpQueue sends for each kind the proxy answers
    "update": _object(
        {
            "job": _JOB,
            "status": {"enum": [None, "active"]},  # its end is a finish, never an update
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "meta": PROGRESS,
            "expire_at": {"type": ["number", "null"]},
        },
        ("job",),
    ),
    "finish": _object(
        {
            "job": _JOB,
            "status": {"enum": ["complete", "failed", "aborted"]},
            "result": {"type": ["object", "null"]},
            "error": _TEXT,
        },
        ("job", "status"),
    ),
    "retry": _object({"job": _JOB, "error": _TEXT}, ("job",)),
    "finish_abort": _object({"job": _JOB}, ("job",)),
    "notify": _object({"job": _JOB}, ("job",)),
    "job": _object({"job_key": _NAME}, ("job_key",)),
    "jobs": _object(
        {"job_keys": {"type": "array", "maxItems": 100, "items": _NAME}}, ("job_keys",)
    ),
    "dequeue": _object(  # a wait on the server: a heartbeat or so, never hours
        {"timeout": {"type": "number", "minimum": 0, "maximum": 60}, "poll_interval": _SECONDS}
    ),
    "write_worker_info": _object(
        {
            "worker_id": _NAME,
            "ttl": _SECONDS,
            "info": {"type": "object", "properties": {"metadata": INFO}, "required": ["metadata"]},
        },
        ("worker_id", "info"),
    ),
    "sweep": _object({"lock": _SECONDS, "abort": _SECONDS}),
    "schedule": _object({"lock": _SECONDS}),
}
_VALIDATORS = {kind: jsonschema.Draft202012Validator(schema) for kind, schema in _KINDS.items()}
_SAQ_JOB = jsonschema.Draft202012Validator(SAQ_JOB)


class Malformed(BadRequest):
    """A worker host's message is not what the protocol allows (400; the node that sent
    it is marked unhealthy)."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    fields: dict[str, Any]  # the request, checked
    job: dict[str, Any] | None  # the SAQ job inside it, parsed and checked

    @property
    def job_id(self) -> str:
        """Our job's id, as the SAQ job names it ("" when it names none)."""
        job = (self.job or {}).get("kwargs", {}).get("job", {})
        return str(job.get("id", ""))


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float
    speed: float | None
    size: int
    frames: int
    plan: str | None

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Progress:
        """From an update's ``meta`` (already held against PROGRESS)."""
        speed = meta.get("speed")
        return cls(
            float(meta.get("percent", 0.0)),
            float(speed) if speed else None,
            int(meta.get("size", 0)),
            int(meta.get("frames", 0)),
            meta.get("plan"),
        )


def parse(body: str | bytes) -> Message:
    """A queue proxy request, checked; Malformed (400) names what is wrong."""
    fields = _strict_json(body, "the request")
    if not isinstance(fields, dict) or not isinstance(fields.get("kind"), str):
        raise Malformed("the request is not a JSON object with a kind")
    kind = fields.pop("kind")
    validator = _VALIDATORS.get(kind)
    if validator is None:
        return Message(kind, fields, None)  # the proxy refuses it by name (403)
    _check(validator, fields, kind)
    try:  # what PostgreSQL will be asked to store must be text it can hold
        text = json.dumps(fields, ensure_ascii=False)
        text.encode()
    except UnicodeEncodeError:
        raise Malformed(f"the {kind} request is not valid Unicode text") from None
    if "\\u0000" in text:
        raise Malformed(f"the {kind} request holds a NUL character")
    job = None
    if isinstance(fields.get("job"), str):
        job = _strict_json(fields["job"], "its job")
        _check(_SAQ_JOB, job, f"{kind}'s job")
    return Message(kind, {"kind": kind, **fields}, job)


def _strict_json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_not_a_number)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Malformed(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def _not_a_number(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check(validator: jsonschema.protocols.Validator, data: Any, what: str) -> None:
    if problem := schema_problem(validator, data, what):
        raise Malformed(problem)
