"""A property of the scheduler: whatever arrives, fails, falls back to another device, is
requeued, started by start-job or cancelled, no device ever runs more jobs than its slots,
the overall cap holds, and every job ends truthfully."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimized_versions.catalog.backends import load_backends
from optimized_versions.catalog.device import CPU, Device, Vendor
from optimized_versions.catalog.profiles import load_profiles
from optimized_versions.config import Config
from optimized_versions.errors import MustWait, RetryLater, TranscodeError
from optimized_versions.hardware.devices import Host
from optimized_versions.hardware.ladder import Hardware
from optimized_versions.hardware.load import HostReading, Limits, LoadMonitor
from optimized_versions.hardware.matrix import Check, CheckKind, Matrix
from optimized_versions.hardware.nvml import GpuReading
from optimized_versions.jobs.lifecycle import Lifecycle
from optimized_versions.jobs.local import LocalRuns
from optimized_versions.jobs.models import ACTIVE, Job, JobStatus
from optimized_versions.jobs.outcome import Outcome
from optimized_versions.jobs.placement import Placer, SlotConfig
from optimized_versions.jobs.runner import Lease, Runner
from optimized_versions.jobs.scheduler import Scheduler
from optimized_versions.jobs.store import JobStore

GPU = Device(id="nvidia:0", vendor=Vendor.NVIDIA, name="RTX", driver="550.1")
MATRIX = Matrix(
    key="k",
    ffmpeg="test",
    devices=(CPU, GPU),
    notes=(),
    filters=frozenset(),
    checks=(
        Check("nvidia:0", "nvenc", CheckKind.ENCODE, "h264", True, "works"),
        Check("cpu", "software", CheckKind.ENCODE, "h264", True, "works"),
    ),
)


class Idle:
    def read(self, _: Any) -> Any:
        return HostReading(5, 80, 10**12) if isinstance(_, Path) else GpuReading(0, 0)

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class FakeRunner:
    """Runs nothing: each job takes some event-loop turns and ends as its script says; a
    job scripted to fall back steps from the GPU to the CPU through its lease, as the
    ladder does."""

    script: dict[str, tuple[int, str]]
    profiles: dict[str, Any] = field(default_factory=load_profiles)
    running: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    total_peak: int = 0
    ran_on: dict[str, str] = field(default_factory=dict)  # item -> device it ended on

    def _enter(self, device: str) -> None:
        self.running[device] = self.running.get(device, 0) + 1
        self.peak[device] = max(self.peak.get(device, 0), self.running[device])
        self.total_peak = max(self.total_peak, sum(self.running.values()))

    async def run(
        self,
        job: Job,
        source: str,
        output: Path,
        on_progress: Any,
        lease: Lease,
        on_plan: Any = None,
    ) -> Outcome:
        device = lease.device
        self.ran_on[job.item_id] = device
        self._enter(device)
        try:
            turns, end = self.script[job.item_id]
            for _ in range(turns):
                await asyncio.sleep(0)
            if end == "fallback" and device != "cpu":
                if why := lease.move(CPU):
                    raise MustWait("cpu", why, ["nvenc on nvidia:0: scripted failure"])
                self.running[device] -= 1
                device = self.ran_on[job.item_id] = "cpu"
                self._enter(device)
                for _ in range(turns):
                    await asyncio.sleep(0)
            if end == "fail":
                raise TranscodeError("scripted failure")
            if end == "full" and job.retries == 0:
                raise RetryLater("scripted session cap", device)
            return Outcome(1, "0" * 64, "software", "libx264", "software", [], device)
        finally:
            self.running[device] -= 1


JOBS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 6),
        st.sampled_from(["ok", "ok", "fail", "full", "cancel", "fallback", "fallback", "start"]),
        st.sampled_from(["h264-1080p", "hevc-1080p"]),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=JOBS,
    cpu_slots=st.integers(1, 3),
    nvenc=st.integers(1, 3),
    overall=st.integers(1, 4),
    spill=st.booleans(),
)
def test_slots_are_never_exceeded(
    jobs: list[tuple[int, int, str, str]], cpu_slots: int, nvenc: int, overall: int, spill: bool
) -> None:
    asyncio.run(_scenario(jobs, cpu_slots, nvenc, overall, spill))


async def _scenario(
    jobs: list[tuple[int, int, str, str]], cpu_slots: int, nvenc: int, overall: int, spill: bool
) -> None:
    now = [1000.0]
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(max_concurrent_jobs=overall, max_cached_per_user=0, cache_dir=Path(tmp))
        hardware = Hardware(
            "ffmpeg",
            load_backends(),
            cast(Host, None),
            Path(tmp) / "hw.json",
            ["nvenc", "software"],
            time.monotonic,
            matrix=MATRIX,
        )
        monitor = LoadMonitor(Idle(), Idle(), Path(tmp), Limits(), nvidia=lambda: [0])
        placement = Placer(
            hardware,
            monitor,
            SlotConfig(cpu=cpu_slots, nvenc_sessions=nvenc, spill_to_cpu=spill, overall=overall),
        )
        store = JobStore(Path(tmp) / "jobs.sqlite3", lambda: now[0])
        script = {f"item{n}": (turns, end) for n, (_, turns, end, _) in enumerate(jobs)}
        fake = FakeRunner(script)
        lifecycle = Lifecycle(store, lambda: now[0])
        local = LocalRuns(store, lifecycle, cast(Runner, fake), placement)
        lifecycle.attach(local)
        scheduler = Scheduler(
            store, lifecycle, local, cast(Runner, fake), config, lambda: now[0], placement
        )
        lifecycle.subscribe(scheduler.wake)
        await scheduler.start()
        for n, (user, _, end, profile) in enumerate(jobs):
            job = Job(
                id=f"job{n}",
                owner_id=f"user{user}",
                owner_name="u",
                device_id=f"d{n % 3}",
                item_id=f"item{n}",
                item={},
                input_url="http://x/",
                file_extension=None,
                profile=profile,
                status=JobStatus.QUEUED,
                created_at=now[0] + n,
                output_path=str(Path(tmp) / f"job{n}.mp4"),
            )
            lifecycle.submit(job, "http://x/")
            await asyncio.sleep(0)
            current = store.get(job.id) or job
            if end == "cancel":
                await lifecycle.cancel(current)
            elif end == "start" and current.status is JobStatus.QUEUED:
                lifecycle.start_now(current)
        for _ in range(2000):  # let everything run out; requeued jobs come back later
            now[0] += 100
            monitor.sample()  # a load reading, as the server takes every interval
            scheduler.wake()
            await asyncio.sleep(0)
            if not store.jobs(statuses=ACTIVE):
                break
        await scheduler.close()
        assert fake.total_peak <= overall
        assert fake.peak.get("cpu", 0) <= cpu_slots
        assert fake.peak.get("nvidia:0", 0) <= nvenc
        for n, (*_, profile) in enumerate(jobs):  # the GPU encodes only H.264 here
            where = fake.ran_on.get(f"item{n}")
            if profile == "hevc-1080p":
                assert where in (None, "cpu")
            elif not spill and jobs[n][2] != "fallback":
                assert where in (None, "nvidia:0"), "spilled to the CPU against the setting"
        assert store.jobs(statuses=ACTIVE) == [], "a job is left lying about its state"
        assert all(v == 0 for v in placement.used.values())
        ends = {j.item_id: j.status for j in store.jobs()}
        for n, (_, _, end, _) in enumerate(jobs):
            expected = {
                "ok": JobStatus.COMPLETED,
                "start": JobStatus.COMPLETED,
                "fallback": JobStatus.COMPLETED,
                "full": JobStatus.COMPLETED,
                "fail": JobStatus.FAILED,
            }.get(end)
            if expected is not None:
                assert ends[f"item{n}"] is expected, (n, end, ends[f"item{n}"])
        store.close()
