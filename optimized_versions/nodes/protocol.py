"""What the server and its worker hosts agree on: the SAQ queue and function names, the job
as a worker receives it, the key of each dispatch, and a host's best backend per codec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..catalog.device import Device
from ..hardware.ladder import Hardware
from ..jellyfin.relay import source_name
from ..jobs.models import Job

FUNCTION = "transcode"  # the one function a worker runs
JOB_HEARTBEATS = 3  # a job unheard of for this many heartbeats is swept back
# what a worker may tell about a job it runs; it may never enqueue, nor see other queues
OWN_JOB = frozenset({"update", "finish", "retry", "finish_abort", "notify"})


class Refused(Exception):
    """A worker asked for something that is not its to ask (answered 403)."""


def queue_name(node: str) -> str:
    return f"node.{node}"


def local_best(hardware: Hardware, device: Device, codec: str) -> str:
    """The backend this host's ``device`` would encode ``codec`` with."""
    return hardware.best_on(device, codec)


def dispatch_key(job: Job) -> str:
    """The SAQ key of the job's current dispatch: a new one each time it is sent (SAQ keeps
    an ended job's record a while), found again from the store after a restart."""
    return f"{job.id}.{int((job.started_at or 0) * 1000)}"


def job_payload(job: Job, source: str) -> dict[str, Any]:
    """What a worker needs of a job (no credential: it fetches the source through us)."""
    return {
        "source_name": source_name(source),  # what its URL on this server ends with
        "output_name": Path(job.output_path).name,  # in the server's CACHE_DIR
        "id": job.id,
        "owner_id": job.owner_id,
        "owner_name": job.owner_name,
        "device_id": job.device_id,
        "item_id": job.item_id,
        "item": job.item,
        "input_url": job.input_url,
        "file_extension": job.file_extension,
        "profile": job.profile,
        "created_at": job.created_at,
    }
