"""One owner of a job's life: only jobs/lifecycle.py changes a job in the store, and a
finish that cannot be applied never strands a job (through the real app)."""

from __future__ import annotations

import ast
import dataclasses
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, StartApp, auth, post_job, wait_status
from test_store import _job

from optimized_versions.jobs.lifecycle import Completed, Lifecycle
from optimized_versions.jobs.models import JobStatus
from optimized_versions.jobs.outcome import MalformedReport, Outcome
from optimized_versions.jobs.store import JobStore
from optimized_versions.keys import LIFECYCLE, MONITOR, STORE
from optimized_versions.media.tracks import Track

PACKAGE = Path(__file__).resolve().parent.parent / "optimized_versions"
# the store's writes: a status change, a wait reason, start-job, progress, dismiss...
WRITES = {"transition", "note_wait", "promote", "save_progress", "dismiss", "wait_on"}
STORE_WRITES = {"add", "delete"}  # generic names: counted on a receiver named *store


def _writers() -> dict[str, set[str]]:
    """Module -> the store writes it calls."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, receiver = node.func.attr, ast.unparse(node.func.value)
            if name in WRITES or (name in STORE_WRITES and receiver.endswith("store")):
                module = str(path.relative_to(PACKAGE))
                found.setdefault(module, set()).add(name)
    return found


def test_only_the_lifecycle_writes_jobs() -> None:
    writers = _writers()
    lifecycle = writers.pop("jobs/lifecycle.py") | writers.pop("jobs/shared.py")
    assert lifecycle >= WRITES | STORE_WRITES  # the test sees them
    writers.pop("jobs/store.py", None)  # its own methods, calling each other
    assert writers == {}


def _fail_once(store: JobStore, status: JobStatus, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store refuses the first change to ``status`` as a full disk does."""
    refused: list[str] = []
    real = JobStore.transition

    def transition(self: JobStore, job: Any, to: JobStatus, **changes: Any) -> Any:
        if to is status and not refused:
            refused.append(job.id)
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, job, to, **changes)

    monkeypatch.setattr(JobStore, "transition", transition)
    return refused


async def test_a_completion_the_store_refuses_does_not_strand_the_job(
    env: Env, start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_app()
    refused = _fail_once(client.app[STORE], JobStatus.COMPLETED, monkeypatch)
    job_id = await post_job(client, env, "h264")
    job = await wait_status(client, job_id, "completed")
    assert refused == [job_id], "the first completion was refused"
    store = client.app[STORE]
    assert store.jobs(statuses=[JobStatus.OPTIMIZING]) == []
    output = Path(job["outputPath"])
    assert output.stat().st_size == job["size"]
    download = await client.get(f"/download/{job_id}", headers=auth())
    assert download.status == 200 and len(await download.read()) == job["size"]


async def test_a_job_optimizing_on_no_executor_is_queued_again(
    env: Env, start_app: StartApp
) -> None:
    env.load.cpu = 99.0  # held: nothing starts while the job is arranged
    client = await start_app()
    job_id = await post_job(client, env, "h264")
    store, lifecycle = client.app[STORE], client.app[LIFECYCLE]
    job = store.get(job_id)
    assert job is not None
    lifecycle.started(job)  # as a finish that failed to apply leaves it: running nowhere
    assert [j.id for j in lifecycle.recover()] == [job_id]
    again = store.get(job_id)
    assert again is not None and again.status is JobStatus.QUEUED
    assert again.started_at is None and again.node is None
    env.load.cpu = 10.0
    client.app[MONITOR].sample()  # a new reading wakes the scheduler
    await wait_status(client, job_id, "optimizing", "completed")


def test_a_refused_completion_leaves_no_output(tmp_path: Path) -> None:
    """The produced file becomes the job's only once the store accepted the change."""
    now = [1000.0]
    store = JobStore(tmp_path / "jobs.sqlite3", lambda: now[0])
    lifecycle = Lifecycle(store, lambda: now[0])
    job = replace(_job("j1"), output_path=str(tmp_path / "j1.mp4"))
    store.add(job, "http://jf/x")
    job = lifecycle.started(job)
    produced = tmp_path / "arrived.received"
    produced.write_bytes(b"x" * 10)
    outcome = Outcome(10, "a" * 64, "software", "libx264", "software", [], "cpu")
    store.close()  # the data folder is gone: the change cannot be written
    assert lifecycle.finished(job, Completed(outcome, produced)) is False
    assert not produced.exists() and not Path(job.output_path).exists()
    assert lifecycle.stranded


_GOOD = {"size": 1, "checksum": "a" * 64, "backend": "x", "encoder": "x", "decoder": "x",
         "device": "cpu"}  # fmt: skip


_TRACK = {"type": "audio", "index": 1, "codec": "aac", "action": "copy", "reason": "r"}


@pytest.mark.parametrize(
    "report",
    [
        "not an object",
        {"size": 1, "checksum": "a" * 64},
        {**_GOOD, "size": "big"},
        {**_GOOD, "size": True},
        {**_GOOD, "checksum": "zz"},
        {**_GOOD, "fallbacks": 3},
        {**_GOOD, "tracks": ["x"]},
        {**_GOOD, "extra": 1},
        {**_GOOD, "tracks": [{**_TRACK, "language": {"nested": "object"}}]},
        {**_GOOD, "tracks": [{**_TRACK, "type": "video"}]},
        {**_GOOD, "plan": "x" * 100_000},
        {**_GOOD, "command": ["x"] * 10_000},
    ],
)
def test_a_malformed_worker_report_is_refused_by_name(report: object) -> None:
    with pytest.raises(MalformedReport):
        Outcome.from_report(report)


def test_a_worker_report_round_trips() -> None:
    assert Outcome.from_report(_GOOD).size == 1
    outcome = Outcome(10, "a" * 64, "nvenc", "h264_nvenc", "cuda", ["x: y"], "nvidia:0", plan="p")
    assert Outcome.from_report(outcome.report()) == outcome
    tracks = [  # every field a track can show, as the runner reports them
        Track("audio", 1, "ac3", "convert", "r", "aac", "eng", "5.1", default=True).to_api(),
        Track("subtitle", 3, "subrip", "copy", "r", "mov_text", external=True).to_api(),
        Track("subtitle", 4, "hdmv_pgs_subtitle", "burn", "r", forced=True).to_api(),
    ]
    with_tracks = dataclasses.replace(outcome, tracks=tracks)
    assert Outcome.from_report(with_tracks.report()) == with_tracks
