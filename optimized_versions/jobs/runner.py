"""One job's work: probe the source, walk the ladder of encoders (running ffmpeg on each
rung until one works), verify the output, hash it.

Where the job runs is not decided here: the job holds a ``Lease`` on a device from the
scheduler, and a rung on another device (a GPU job stepping down to the CPU) must first
``move`` the lease; when that device has no free slot the job goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ..catalog.device import Device
from ..catalog.profiles import Profile
from ..errors import MustWait, RetryLater, TranscodeError
from ..hardware.ladder import Hardware
from ..jellyfin.relay import Relayed, SourceRelay
from ..jellyfin.urls import audio_stream_index, scrub, secrets_in, subtitle_stream_index
from ..media import ffmpeg, probe, quality
from ..media.failures import Failure, classify
from ..media.plan import PlanError, Target, build_argv, make_plan, source_input
from ..media.probe import SubtitleInfo
from ..waits import Hold
from . import assess, cache, sidecars
from .models import Job
from .outcome import Outcome
from .output import Expected, verified_checksum

log = logging.getLogger(__name__)


# %, speed, bytes, and the video frames written since the last call
ProgressCallback = Callable[[float, float | None, int, int], None]
PlanCallback = Callable[[str], None]  # why each stream is copied or encoded, per rung


class Lease(Protocol):
    """The slot a running job holds, from the scheduler."""

    @property
    def device(self) -> str: ...

    def move(self, target: Device) -> Hold | None:
        """Hold a slot on ``target`` instead; why not, when it has none free."""
        ...


def _ignore(why: str) -> None:
    """No one listens for the plan (the probe's test encodes)."""


def _why(exc: ffmpeg.FFmpegError, secrets: list[str]) -> str:
    lines = [scrub(line, secrets) for line in exc.stderr[-5:]]
    return scrub(str(exc), secrets) + (": " + " | ".join(lines) if lines else "")


def _item_name(job: Job) -> str | None:
    name = job.item.get("Name")
    return name if isinstance(name, str) else None


def _choice(read: Callable[[str], int | None], source: str, job: Job) -> int | None:
    """A stream the user chose: from the source URL, else from the client's own URL (a
    source read from a mounted folder has no query)."""
    value = read(source)
    return value if value is not None else read(job.input_url)


@contextlib.contextmanager
def _local(path: str) -> Iterator[Relayed]:
    """A source on a mounted folder: read as it is."""
    yield Relayed(path, path)


class Runner:
    def __init__(
        self,
        ffmpeg_path: str,
        profiles: dict[str, Profile],
        hardware: Hardware,
        relay: SourceRelay,
        *,
        stall_timeout: float,
        stop_grace: float,
        subtitles: Callable[[Job, str], sidecars.Subtitles | None],
        probe_timeout: float = 30.0,
        downmix: str = "default",
    ) -> None:
        self.ffmpeg_path = ffmpeg_path
        self.profiles = profiles
        self.hardware = hardware
        self.relay = relay
        self.stall_timeout = stall_timeout
        self.stop_grace = stop_grace
        self.probe_timeout = probe_timeout
        self.downmix = downmix  # DOWNMIX: how surround becomes stereo
        # where a job's sidecar subtitle files come from: Jellyfin with the job's token on
        # the server, the server itself on a worker host
        self.subtitles = subtitles

    async def run(
        self,
        job: Job,
        source: str,
        output: Path,
        on_progress: ProgressCallback,
        lease: Lease,
        on_plan: PlanCallback | None = None,
    ) -> Outcome:
        """Write ``output`` or raise TranscodeError (or RetryLater, MustWait); never leaves
        a partial file behind."""
        partial = cache.partial(output)
        remote = urlsplit(source).scheme in ("http", "https")
        try:
            with self.relay.serve(source) if remote else _local(source) as feed:
                subs = await self._sidecars(job, source, cache.sidecar_folder(output))
                reports = (on_progress, on_plan or _ignore)
                return await self._run(job, source, feed, output, partial, reports, lease, subs)
        except BaseException:
            ffmpeg.remove_quietly(partial, output)
            raise
        finally:  # the sidecar files served their purpose (a start removes strays)
            shutil.rmtree(cache.sidecar_folder(output), ignore_errors=True)

    async def _run(
        self,
        job: Job,
        source: str,
        feed: Relayed,
        output: Path,
        partial: Path,
        reports: tuple[ProgressCallback, PlanCallback],
        lease: Lease,
        sidecars: tuple[SubtitleInfo, ...],
    ) -> Outcome:
        secrets = secrets_in(source)
        profile = self.profiles[job.profile]
        try:
            info = await asyncio.to_thread(probe.probe, feed.url, self.probe_timeout)
        except probe.ProbeError as exc:
            reason = feed.problem or scrub(str(exc), secrets)
            raise TranscodeError(f"cannot read the source: {reason}") from None
        try:
            ladder = self.hardware.ladder(profile, info, lease.device)
        except PlanError as exc:
            raise TranscodeError(str(exc)) from None
        duration = info.duration or job.item_duration
        on_progress, on_plan = reports

        seen = 0  # ffmpeg counts a run's frames from its start: each report passes on the new

        def progress(update: ffmpeg.Progress) -> None:
            nonlocal seen
            percent = min(99.9, 100 * update.out_time / duration) if duration else 0.0
            new, seen = (
                (update.frames - seen if update.frames >= seen else update.frames),
                update.frames,
            )
            on_progress(percent, update.speed, update.total_size, new)

        fallbacks: list[str] = []
        for target in ladder:
            if target.backend.hardware and self.hardware.out_of_use(target.device.id):
                continue  # lost during an earlier rung of this job
            if why := lease.move(target.device):  # never beside that device's own jobs
                raise MustWait(target.device.id, why, fallbacks)
            seen = 0  # a new rung, a new ffmpeg run
            try:
                plan = make_plan(
                    profile,
                    info,
                    target,
                    _choice(audio_stream_index, source, job),
                    title=_item_name(job),
                    downmix=self.downmix,
                    subtitle_index=_choice(subtitle_stream_index, source, job),
                    external=sidecars,
                )
            except PlanError as exc:
                raise TranscodeError(str(exc)) from None
            inputs = source_input(feed.url, info.format)  # read as the probe read it
            ref = quality.reference(plan, inputs, info)
            spans = quality.windows(duration)
            plan, aimed = await assess.aim_at(
                self.ffmpeg_path, job.id, plan, profile, target, ref, spans, duration
            )
            argv = build_argv(self.ffmpeg_path, plan, profile, target, inputs, str(partial))
            on_plan("; ".join(plan.why))
            log.info(
                "job %s: %s on %s (%s s)",
                job.id,
                plan.describe(),
                target.device.id,
                f"{duration:.1f}" if duration else "?",
            )
            try:
                await ffmpeg.run(
                    argv,
                    progress,
                    stall_timeout=self.stall_timeout,
                    stop_grace=self.stop_grace,
                    env=target.backend.env,
                )
                # verified (and hashed meanwhile) on this rung: a hardware encoder that
                # wrote a short or broken file steps down like one that failed
                checksum = await verified_checksum(partial, Expected.of_plan(plan, duration))
                measured = await assess.measured(
                    self.ffmpeg_path, job.id, partial, ref, spans, profile
                )
            except (ffmpeg.FFmpegError, TranscodeError) as exc:
                failed = self._step_down(exc, plan.copy_video, target, feed, secrets)
                fallbacks.append(f"{target.describe()}: {failed}")
                log.warning(
                    "job %s: %s failed (%s); stepping down", job.id, target.describe(), failed
                )
                ffmpeg.remove_quietly(partial)
                continue
            break
        else:
            raise TranscodeError("no encoder could do it: " + "; ".join(fallbacks))
        os.replace(partial, output)
        return Outcome(
            size=output.stat().st_size,
            checksum=checksum,
            backend=plan.backend,
            encoder=plan.encoder,
            decoder=plan.decoder,
            fallbacks=fallbacks,
            device=target.device.id,
            tracks=[t.to_api() for t in plan.tracks.all()],
            plan="; ".join(plan.why),
            command=[scrub(arg, secrets) for arg in argv],
            quality={**measured, **aimed} if measured else None,
        )

    async def _sidecars(self, job: Job, source: str, folder: Path) -> tuple[SubtitleInfo, ...]:
        """The item's external subtitle files, fetched into ``folder``."""
        chosen = _choice(subtitle_stream_index, source, job)
        profile = self.profiles[job.profile]
        listed = source if urlsplit(source).query else job.input_url  # its MediaSourceId
        return await sidecars.fetch(
            self.subtitles(job, source), job.item_id, job.item, listed, profile, chosen, folder
        )

    def _step_down(
        self,
        exc: ffmpeg.FFmpegError | TranscodeError,
        copied: bool,
        target: Target,
        feed: Relayed,
        secrets: list[str],
    ) -> str:
        """Why this rung failed, when the next rung may do better; raise when none can."""
        final = copied or not target.backend.hardware
        if isinstance(exc, TranscodeError):  # the output failed verification
            if final:
                raise exc
            return str(exc)
        kind, meaning = classify(exc.stderr)
        meaning = scrub(meaning, secrets)
        if kind is Failure.SOURCE and feed.problem:
            raise TranscodeError(f"cannot read the source: {feed.problem}") from None
        if final or kind is Failure.SOURCE:
            raise TranscodeError(_why(exc, secrets)) from None
        if kind is Failure.SESSION_CAP:
            raise RetryLater(meaning, target.device.id) from None
        if kind is Failure.DEVICE_LOST:
            self.hardware.trip(target.device.id, meaning)
        return meaning
