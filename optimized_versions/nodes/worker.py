"""A worker host: ``optimized-versions worker --server URL`` (token in WORKER_TOKEN).

It probes its own hardware (the same probe and matrix as the server), then takes jobs from
its queue on the server through SAQ's HttpQueue (the server's ``/worker/queue``), only while
its own load gate allows (the same psutil/NVML admission as the server). A job runs through
the same Runner as on the server: the source is read through the server
(``/worker/jobs/{id}/source``, the token kept out of ffmpeg's argv by the loopback relay),
progress goes back every couple of seconds (which is also the job's heartbeat), and the
output goes back by a resumable upload before the job is reported done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
from saq import Worker
from saq.queue.http import HttpQueue

from .. import version
from ..catalog.profiles import Profile
from ..config import Config
from ..errors import MustWait, RetryLater, TranscodeError
from ..hardware.ladder import Hardware
from ..hardware.load import PsutilReader
from ..hardware.nvml import Nvml
from ..jellyfin.relay import SourceRelay
from ..jellyfin.rules import SourceRules
from ..jobs import cache
from ..jobs.models import Job, JobStatus
from ..jobs.placement import Placed, SlotLease, placer_from
from ..jobs.runner import Runner
from .fleet import SOFTWARE
from .protocol import FUNCTION, local_best, queue_name
from .transfer import FromServer, upload

log = logging.getLogger(__name__)

REPORT_EVERY = 2.0  # seconds between progress reports (each is the job's heartbeat too)
SERVER_PATIENCE = 60.0  # seconds the source may be unreachable (the server restarting)
CODECS = ("h264", "hevc")


class WorkerError(Exception):
    """The worker cannot start (bad token, server unreachable); the message says why."""


class GatedWorker(Worker):  # type: ignore[type-arg]
    """SAQ's worker that asks for a job only while this host's load gate is open."""

    def __init__(self, *args: Any, host: WorkerHost, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    async def process(self) -> bool:
        while self.host.closed() is not None and not self.event.is_set():
            await asyncio.sleep(0.5)
        return bool(await super().process())


class WorkerHost:
    def __init__(
        self,
        config: Config,
        hardware: Hardware,
        profiles: dict[str, Profile],
        server: str,
        token: str,
    ) -> None:
        self.config, self.hardware, self.profiles = config, hardware, profiles
        self.server, self.token = server.rstrip("/"), token
        self.auth = {"Authorization": f"Bearer {token}"}
        self.placer = placer_from(config, hardware, (PsutilReader(), Nvml()), worker=True)
        self.monitor = self.placer.monitor
        # the source comes from the server alone, with the worker token in a header
        self.relay = SourceRelay(
            SourceRules.build(self.server, None), headers=self.auth, patience=SERVER_PATIENCE
        )
        self.runner = Runner(
            hardware.binary,
            profiles,
            hardware,
            self.relay,
            stall_timeout=config.stall_timeout,
            stop_grace=config.stop_grace,
            subtitles=lambda job, source: FromServer(
                lambda: self.session, self.server, self.auth, job.id
            ),
            downmix=config.downmix,
        )
        self.metadata: dict[str, Any] = {}
        self.session: aiohttp.ClientSession | None = None

    def closed(self) -> str | None:
        """Why no job may start now (host load, disk, no free slot), or None."""
        self.monitor.sample()
        hold = self.monitor.disk_low() or self.monitor.cpu_busy()
        why = None if hold is None else str(hold)
        devices = self.hardware.matrix.devices
        if why is None and all(self.placer.free(d) <= 0 for d in devices):
            why = "every slot is in use"
        self.describe(why)
        return why

    def describe(self, busy: str | None) -> None:
        """What the server reads in this host's heartbeat (SAQ worker_info metadata)."""
        devices = self.hardware.matrix.devices
        best: dict[str, str] = {}
        for codec in CODECS:
            found = [local_best(self.hardware, d, codec) for d in devices]
            best[codec] = next((b for b in self.hardware.preference if b in found), SOFTWARE)
        self.metadata.update(
            version=version(),
            best=best,
            slots=sum(self.placer.capacity(d) for d in devices),
            busy=busy,
            devices=[
                {
                    "id": d.id,
                    "vendor": str(d.vendor),
                    "name": d.name,
                    "slots": self.placer.capacity(d),
                    "used": self.placer.used.get(d.id, 0),
                }
                for d in devices
            ],
        )

    async def hello(self) -> str:
        """The server knows this token: the node's name (its queue is ``node.<name>``)."""
        assert self.session is not None
        try:
            async with self.session.get(f"{self.server}/worker/hello", headers=self.auth) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise WorkerError(f"the server refused: {body.get('message', resp.status)}")
                return str(body["node"])
        except aiohttp.ClientError as exc:
            raise WorkerError(f"the server {self.server} cannot be reached: {exc}") from None

    async def run(self) -> None:
        self.config.cache_dir.mkdir(parents=True, exist_ok=True)
        await self.hardware.load()
        self.session = aiohttp.ClientSession()
        await self.relay.start()
        try:
            name = await self.hello()
            self.describe(None)
            queue = HttpQueue(
                f"{self.server}/worker/queue", name=queue_name(name), headers=self.auth
            )
            heartbeat = max(1, round(self.config.worker_heartbeat))
            capacity = max(1, sum(self.placer.capacity(d) for d in self.hardware.matrix.devices))
            worker = GatedWorker(
                queue,
                [(FUNCTION, self.transcode)],
                host=self,
                concurrency=capacity,
                id=f"{name}@{socket.gethostname()}",
                metadata=self.metadata,
                dequeue_timeout=heartbeat,
                shutdown_grace_period_s=int(self.config.stop_grace),
                timers={"worker_info": heartbeat, "abort": 1, "sweep": 3600, "schedule": 3600},
            )
            log.info("worker %s: %d slot(s), serving %s", name, capacity, self.server)
            await queue.connect()
            monitor = asyncio.create_task(self.monitor.run(self.config.load_interval))
            try:
                await worker.start()
            finally:
                monitor.cancel()
                await queue.disconnect()
        finally:
            await self.relay.close()
            await self.session.close()
            await self.hardware.close()

    async def transcode(self, ctx: dict[str, Any], *, job: dict[str, Any]) -> dict[str, Any]:
        """One job from the server: run it here, upload the output, report what ran."""
        saq_job = ctx["job"]
        shared = self.config.server_cache_dir  # the server's cache folder, mounted here
        output_path = (
            cache.received(shared / job["output_name"])  # where its upload would end up
            if shared is not None
            else self.config.cache_dir / cache.output_name(job["id"])
        )
        record = Job(
            **{k: v for k, v in job.items() if k not in ("source_name", "output_name")},
            status=JobStatus.OPTIMIZING,
            output_path=str(output_path),
        )
        profile = self.profiles[record.profile]
        state: dict[str, Any] = {"percent": 0.0, "size": 0, "frames": 0, "speed": None}
        every = min(REPORT_EVERY, self.config.worker_heartbeat)
        reporter = asyncio.create_task(_report(saq_job, state, every))
        lease: SlotLease | None = None
        try:
            while not isinstance(where := self.placer.place(profile), Placed):
                state["waiting"] = str(where.reason)  # the server's gate and ours disagreed
                await asyncio.sleep(1)
            lease = SlotLease.claim(self.placer, where.device.id)
            source = f"{self.server}/worker/jobs/{record.id}/source/{job['source_name']}"

            def progress(percent: float, speed: float | None, size: int, frames: int) -> None:
                state.update(percent=percent, speed=speed, size=size)
                state["frames"] += frames  # the new ones: sent and zeroed by each report

            def planned(why: str) -> None:
                state["plan"] = why

            output = Path(record.output_path)
            outcome = await self.runner.run(record, source, output, progress, lease, planned)
            await _send_report(saq_job, state)  # the frames since the last report
            if shared is None:  # else written in place: the server hashes it to check
                try:
                    assert self.session is not None
                    await upload(
                        self.session, self.server, self.token, record.id, output, outcome.checksum
                    )
                finally:
                    output.unlink(missing_ok=True)
            return outcome.report()  # rebuilt as an Outcome by the server
        except (RetryLater, MustWait) as exc:
            return {"requeue": str(exc)}
        except TranscodeError as exc:
            return {"error": str(exc)}
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            if lease is not None:
                lease.release()


async def _report(saq_job: Any, state: dict[str, Any], every: float) -> None:
    """Progress to the server every ``every`` seconds: what the phone shows, and the
    heartbeat that keeps the job this host's."""
    while True:
        await _send_report(saq_job, state)
        await asyncio.sleep(every)


async def _send_report(saq_job: Any, state: dict[str, Any]) -> None:
    frames, state["frames"] = state["frames"], 0  # since the last report
    with contextlib.suppress(Exception):  # a missed report is made up by the next
        await saq_job.update(progress=state["percent"] / 100, meta={**state, "frames": frames})
