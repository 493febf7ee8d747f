"""The functional probe: what each device can really encode and decode, by trying it.

For every device x backend x codec it encodes a second of ``testsrc2`` through the very
argv the planner builds, and decodes short H.264/HEVC samples with the backend's hardware
decoder. Success is exit status 0 and frames in the output, never the absence of warnings.
The answer (the capability matrix) is cached on disk, keyed by the ffmpeg build, the
drivers, the device list and the backend files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import av
import av.error

from ..catalog.backends import Backend
from ..catalog.device import Device
from ..catalog.profiles import AudioSpec, Profile, VideoSpec
from ..media import ffmpeg
from ..media.failures import classify
from ..media.plan import Target, build_argv, make_plan
from ..media.probe import MediaInfo, VideoInfo
from . import extra_checks
from .listing import FFmpegUnusable, ffmpeg_listing, names
from .matrix import LIBPLACEBO, Check, CheckKind, Matrix

log = logging.getLogger(__name__)

TEST_SIZE = (256, 144)
ATTEMPTS = 2  # some drivers fail once, then work


def cache_key(version: str, devices: list[Device], backends: dict[str, Backend]) -> str:
    """The same in every process for the same ffmpeg, devices and backend files (sets are
    sorted: their order changes with each interpreter's string hashing)."""
    material = json.dumps(
        [
            version,
            [dataclasses.asdict(d) for d in devices],
            {name: dataclasses.asdict(b) for name, b in backends.items()},
        ],
        sort_keys=True,
        default=sorted,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _frames(path: Path) -> int:
    try:
        with av.open(str(path)) as box:
            return sum(1 for packet in box.demux(video=0) if packet.size)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


class Prober:
    def __init__(self, binary: str, workdir: Path, timeout: float) -> None:
        self.binary = binary
        self.workdir = workdir
        self.timeout = timeout  # for each ffmpeg call
        self._grace = min(2.0, timeout)  # between asking a test run to quit and killing it

    async def run(
        self,
        backends: dict[str, Backend],
        devices: list[Device],
        notes: list[str],
        key: str,
        version: str,
    ) -> Matrix:
        encoders = names(await ffmpeg_listing(self.binary, "-encoders", self.timeout))
        filters = names(await ffmpeg_listing(self.binary, "-filters", self.timeout))
        # the VAAPI driver picks encoder quirks (CBR on i965), so learn it before encoding
        wait = min(self.timeout, 10.0)
        devices = [
            dataclasses.replace(d, va_driver=await extra_checks.va_driver(self.binary, d, wait))
            if d.render_node
            else d
            for d in devices
        ]
        checks: list[Check] = []
        for backend, device in _placements(backends, devices):
            for codec in backend.encoders:
                checks.append(await self._encode(backend, device, codec, encoders))
            if backend.decode is not None and device.usable:
                for codec in extra_checks.DECODE_SAMPLES:
                    if codec.removesuffix("_10bit") in backend.decode.codecs:
                        checks.append(await self._decode(backend, device, codec, filters))
                if backend.decode.deinterlace is not None:
                    checks.append(await self._deinterlace(backend, device, filters))
        checks.append(await self._placebo(filters))
        return Matrix(
            key=key,
            ffmpeg=version,
            devices=tuple(devices),
            notes=tuple(notes),
            checks=tuple(checks),
            filters=filters,
        )

    async def _encode(
        self, backend: Backend, device: Device, codec: str, encoders: frozenset[str]
    ) -> Check:
        spec = backend.encoders[codec]
        base = (device.id, backend.name, CheckKind.ENCODE, codec)
        if not device.usable:
            return Check(*base, ok=False, reason=str(device.problem))
        if spec.codec not in encoders:
            return Check(*base, ok=False, reason=f"this ffmpeg has no {spec.codec} encoder")
        # the 10-bit entry is probed as the profile's codec, through the planner
        output_codec = codec.removesuffix("_10bit")
        probe_backend = dataclasses.replace(backend, encoders={output_codec: spec})
        profile = Profile(
            name="probe", container="mp4",
            video=VideoSpec(output_codec, *TEST_SIZE, max_bitrate=1_000_000, preset="fast"),
            audio=AudioSpec("aac", 2, 64_000),
        )  # fmt: skip
        source = VideoInfo(
            index=0,
            codec="rawvideo",
            width=TEST_SIZE[0],
            height=TEST_SIZE[1],
            pix_fmt="yuv420p",
            bit_depth=8,
            bit_rate=None,
        )
        media = MediaInfo(format="lavfi", duration=1.0, bit_rate=None, video=source, audio=())
        target = Target(probe_backend, device)
        output = self.workdir / f"encode-{backend.name}-{device.id.replace(':', '-')}-{codec}.mp4"
        lavfi = [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={TEST_SIZE[0]}x{TEST_SIZE[1]}:rate=25:duration=1",
        ]
        argv = build_argv(
            self.binary, make_plan(profile, media, target), profile, target, lavfi, str(output)
        )
        return await self._attempt(base, argv, lambda _last: _frames(output), backend.env)

    async def _decode(
        self, backend: Backend, device: Device, codec: str, filters: frozenset[str]
    ) -> Check:
        assert backend.decode is not None
        base = (device.id, backend.name, CheckKind.DECODE, codec)
        missing = [f for f in backend.decode.filters if f not in filters]
        if missing:
            return Check(*base, ok=False, reason=f"this ffmpeg has no {', '.join(missing)} filter")
        try:
            sample = await extra_checks.decode_sample(
                self.binary, self.workdir, codec, self.timeout
            )
        except (ffmpeg.FFmpegError, TimeoutError) as exc:
            why = f"the {codec} test sample could not be made ({type(exc).__name__})"
            return Check(*base, ok=False, reason=why)
        values = {
            "index": device.index,
            "render_node": device.render_node or "",
            "pix_fmt": "yuv420p",
            "width": TEST_SIZE[0],
            "height": TEST_SIZE[1],
        }
        argv = [self.binary, "-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1",
                *(a.format_map(values) for a in backend.init), *backend.decode.args,
                "-i", str(sample), "-vf", backend.decode.format.format_map(values),
                "-f", "null", "-"]  # fmt: skip
        return await self._attempt(base, argv, lambda last: last.frames if last else 0, backend.env)

    async def _deinterlace(
        self, backend: Backend, device: Device, filters: frozenset[str]
    ) -> Check:
        """The device deinterlacer on hardware-decoded frames, probed like scaling."""
        base = (device.id, backend.name, CheckKind.DEINTERLACE, "h264")
        missing = sorted(extra_checks.deinterlace_filters(backend) - filters)
        if missing:
            return Check(*base, ok=False, reason=f"this ffmpeg has no {', '.join(missing)} filter")
        sample = await extra_checks.interlaced_sample(self.binary, self.workdir, self.timeout)
        argv = extra_checks.deinterlace_argv(self.binary, backend, device, sample)
        return await self._attempt(base, argv, lambda last: last.frames if last else 0, backend.env)

    async def _placebo(self, filters: frozenset[str]) -> Check:
        """libplacebo with a Vulkan device: the only way to convert Dolby Vision profile 5."""
        base = ("cpu", "software", CheckKind.FILTER, LIBPLACEBO)
        if LIBPLACEBO not in filters:
            return Check(*base, ok=False, reason="this ffmpeg has no libplacebo filter")
        argv = extra_checks.placebo_argv(self.binary)
        return await self._attempt(base, argv, lambda last: last.frames if last else 0)

    async def _attempt(
        self,
        base: tuple[str, str, CheckKind, str],
        argv: list[str],
        count: Callable[[ffmpeg.Progress | None], int],
        env: dict[str, str] | None = None,
    ) -> Check:
        reason, stderr = "no frames came out", tuple[str, ...]()
        for _ in range(ATTEMPTS):
            updates: list[ffmpeg.Progress] = []
            try:
                async with asyncio.timeout(self.timeout):
                    await ffmpeg.run(
                        argv,
                        updates.append,
                        stall_timeout=self.timeout,
                        stop_grace=self._grace,
                        env=env,
                    )
            except ffmpeg.FFmpegError as exc:
                reason, stderr = classify(exc.stderr)[1], tuple(exc.stderr[-8:])
                continue
            except TimeoutError:  # a hung driver does not get better the second time
                reason = f"the test did not finish within {self.timeout:g} s"
                break
            if count(updates[-1] if updates else None) > 0:
                return Check(*base, ok=True, reason="works")
        log.info("probe: %s %s %s on %s: %s", base[1], base[2], base[3], base[0], reason)
        return Check(*base, ok=False, reason=reason, stderr=stderr)


async def probe_matrix(
    binary: str,
    backends: dict[str, Backend],
    devices: list[Device],
    notes: list[str],
    key: str,
    version: str,
    timeout: float,
) -> Matrix:
    with tempfile.TemporaryDirectory(prefix="ovs-probe-") as tmp:
        prober = Prober(binary, Path(tmp), timeout)
        try:
            return await prober.run(backends, devices, notes, key, version)
        except FFmpegUnusable as exc:
            return unusable_matrix(str(exc), backends, devices, notes, key, version)


def _placements(
    backends: dict[str, Backend], devices: list[Device]
) -> list[tuple[Backend, Device]]:
    """Each backend with each device of a vendor it runs on."""
    return [(b, d) for b in backends.values() for d in devices if d.vendor in b.devices]


def unusable_matrix(
    reason: str,
    backends: dict[str, Backend],
    devices: list[Device],
    notes: list[str],
    key: str,
    version: str,
) -> Matrix:
    """Every encoder fails for one reason (ffmpeg cannot be run): the server still starts
    and says why in GET /hardware; jobs fail with it."""
    checks = tuple(
        Check(device.id, backend.name, CheckKind.ENCODE, codec, ok=False, reason=reason)
        for backend, device in _placements(backends, devices)
        for codec in backend.encoders
    )
    return Matrix(key, version, tuple(devices), tuple(notes), checks, frozenset())
