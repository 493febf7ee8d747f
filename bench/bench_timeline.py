"""Where the time goes around one remote job, as the server sees it: a middleware notes
when each worker call arrives and is answered (bench_workers.py's throughput part).
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

JOB_PATH = re.compile(r"^/worker/jobs/([^/]+)/(source|output)")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Timeline:
    """When the server saw each step of one job (time.time(): the store's clock too)."""

    posted: float = 0.0
    placed: float | None = None  # sent to a node's queue (the store's started_at)
    dequeued: float | None = None  # the dequeue answer carrying it went to the worker
    source: float | None = None  # the worker's first read of the source
    upload: float | None = None  # the worker's first upload request (HEAD)
    uploaded: float | None = None  # the last PATCH answered: received and SHA-256 checked
    finish: float | None = None  # the worker's SAQ finish arrived
    completed: float | None = None  # ... and was answered: the job is completed
    node: str = ""


@dataclass
class Run:
    workers: int
    wall: float
    jobs: dict[str, Timeline] = field(default_factory=dict)


class Recorder:
    """A server middleware noting, per job, the worker calls it answers."""

    def __init__(self) -> None:
        self.jobs: dict[str, Timeline] = defaultdict(Timeline)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived = time.time()
        kind, job_id = "", ""
        if request.path == "/worker/queue":
            sent = json.loads(await request.text())  # aiohttp keeps the body for the handler
            kind = sent.get("kind", "")
            if kind == "finish":
                job_id = json.loads(sent["job"])["kwargs"]["job"]["id"]
        response = await handler(request)
        answered = time.time()
        if kind == "dequeue" and isinstance(response, web.Response) and response.text:
            job = json.loads(response.text)["kwargs"]["job"]
            self.jobs[job["id"]].dequeued = answered
        elif kind == "finish" and job_id:
            self.jobs[job_id].finish, self.jobs[job_id].completed = arrived, answered
        elif match := JOB_PATH.match(request.path):
            step = self.jobs[match[1]]
            if match[2] == "source" and step.source is None:
                step.source = arrived
            elif request.method == "HEAD" and step.upload is None:
                step.upload = arrived
            elif request.method == "PATCH" and response.headers.get("Upload-Complete") == "?1":
                step.uploaded = answered
        return response


def spans(run: Run) -> dict[str, list[float]]:
    """Per job: the steps' durations in seconds."""
    out: dict[str, list[float]] = defaultdict(list)
    for t in run.jobs.values():
        if None in (t.placed, t.dequeued, t.source, t.upload, t.uploaded, t.completed):
            continue
        assert t.placed and t.dequeued and t.source and t.upload and t.uploaded and t.finish
        assert t.completed
        out["POST -> placed on a node (waits for a free worker)"].append(t.placed - t.posted)
        out["placed -> dequeued by the worker"].append(t.dequeued - t.placed)
        out["dequeued -> first source read"].append(t.source - t.dequeued)
        out["first source read -> upload starts (probe, ffmpeg, verify, hash)"].append(
            t.upload - t.source
        )
        out["upload + server's SHA-256 check"].append(t.uploaded - t.upload)
        out["upload done -> SAQ finish arrives"].append(t.finish - t.uploaded)
        out["finish -> completed (answered)"].append(t.completed - t.finish)
        out["upload starts -> completed"].append(t.completed - t.upload)
    by_node: dict[str, list[Timeline]] = defaultdict(list)
    for t in run.jobs.values():
        by_node[t.node].append(t)
    for steps in by_node.values():  # a busy worker: its last job done -> its next one in hand
        steps.sort(key=lambda t: t.dequeued or 0.0)
        for done, following in itertools.pairwise(steps):
            if done.completed and following.dequeued:
                out["completed -> the same worker's next job dequeued"].append(
                    following.dequeued - done.completed
                )
    return out


def show(run: Run) -> None:
    nodes = sorted({t.node for t in run.jobs.values()})
    print(f"{run.workers} worker(s): wall {run.wall:.2f} s for {len(run.jobs)} jobs; nodes {nodes}")
    for name, values in spans(run).items():
        med = statistics.median(values) * 1000
        print(
            f"  {name}: median {med:.0f} ms (min {min(values) * 1000:.0f}, "
            f"max {max(values) * 1000:.0f})"
        )
