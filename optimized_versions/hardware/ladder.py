"""What this host can encode with, and the ladder of encoders for one job.

Loads (or probes) the capability matrix at start, orders working backends by the
configured preference and the profile's policy, and keeps a circuit breaker per device:
a device that fails as "lost" is left alone for a while and the host is probed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalog.backends import Backend
from ..catalog.device import Device, Vendor
from ..catalog.profiles import HardwarePolicy, Profile
from ..media.filters import device_tonemaps, filter_names, hw_decodable
from ..media.plan import PlanError, Target
from ..media.probe import MediaInfo
from .devices import Host, discover
from .listing import FFmpegUnusable, ffmpeg_listing
from .matrix import LIBPLACEBO, CheckKind, Matrix
from .prober import cache_key, probe_matrix, unusable_matrix

log = logging.getLogger(__name__)

_DRI = frozenset({Vendor.INTEL, Vendor.AMD})  # found through render nodes


def source_key(media: MediaInfo) -> str:
    """The decode check that covers this source: h264, hevc, hevc_10bit, or its codec."""
    assert media.video is not None
    codec = media.video.codec
    return f"{codec}_10bit" if codec == "hevc" and media.video.bit_depth > 8 else codec


class Hardware:
    def __init__(
        self,
        binary: str,
        backends: dict[str, Backend],
        host: Host,
        cache: Path,
        preference: list[str],
        clock: Callable[[], float],
        breaker_seconds: float = 600.0,
        matrix: Matrix | None = None,  # a known answer, instead of loading or probing
        probe_timeout: float = 30.0,  # for each ffmpeg call of the probe
    ) -> None:
        self.probe_timeout = probe_timeout
        self.binary = binary
        self.backends = backends
        self.host = host
        self.cache = cache
        self.preference = [p for p in preference if p in backends]
        self.clock = clock
        self.breaker_seconds = breaker_seconds
        self._matrix: Matrix | None = matrix
        self._open_until: dict[str, float] = {}
        self._reprobe: asyncio.Task[Matrix] | None = None

    @property
    def matrix(self) -> Matrix:
        if self._matrix is None:
            raise RuntimeError("the hardware has not been probed yet")
        return self._matrix

    async def load(self, refresh: bool = False) -> Matrix:
        """The matrix from the cache when nothing changed, else from a new probe."""
        devices, notes = await asyncio.to_thread(discover, self.host)
        try:
            listing = await ffmpeg_listing(self.binary, "-version", self.probe_timeout)
        except FFmpegUnusable as exc:  # nothing to cache: try again at the next start
            log.error("hardware: %s", exc)
            matrix = unusable_matrix(str(exc), self.backends, devices, notes, "", "unknown")
        else:
            version = listing.split("\n", 1)[0].strip()
            key = cache_key(version, devices, self.backends)
            cached = None if refresh else self._cached(key)
            matrix = cached or await self._probe(devices, notes, key, version)
        self._matrix = matrix
        for line in self.summary():
            log.info("hardware: %s", line)
        return matrix

    async def _probe(
        self, devices: list[Device], notes: list[str], key: str, version: str
    ) -> Matrix:
        log.info("probing %d device(s) with ffmpeg: %s", len(devices), version)
        matrix = await probe_matrix(
            self.binary, self.backends, devices, notes, key, version, self.probe_timeout
        )
        try:  # a cache that cannot be written costs a probe at the next start, not this one
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            self.cache.write_text(json.dumps(matrix.to_json(), indent=1))
        except OSError as exc:
            log.warning("hardware: the probe's answer is not kept in %s: %s", self.cache, exc)
        return matrix

    def _cached(self, key: str) -> Matrix | None:
        try:
            data = json.loads(self.cache.read_text())
            return Matrix.from_json(data) if data.get("key") == key else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def summary(self) -> list[str]:
        """A line per backend of ENCODER_PREFERENCE (tried or not), then one per encode
        check: what works, or why not."""
        lines = [f"{v['backend']}: {v['verdict']}: {v['reason']}" for v in self.verdicts()]
        for check in self.matrix.checks:
            if check.kind is CheckKind.ENCODE:
                state = "works" if check.ok else f"not used: {check.reason}"
                lines.append(f"{check.backend} {check.codec} on {check.device}: {state}")
        return lines

    def verdicts(self) -> list[dict[str, str]]:
        """Every backend of ENCODER_PREFERENCE: ``works``, ``not used`` (tried, failed) or
        ``not tried`` (no device for it), with the reason in plain words."""
        verdicts = []
        for name in self.preference:
            backend = self.backends[name]
            checks = [
                c for c in self.matrix.checks if c.backend == name and c.kind is CheckKind.ENCODE
            ]
            working = sorted({f"{c.codec} on {c.device}" for c in checks if c.ok})
            if working:
                verdict, reason = "works", ", ".join(working)
            elif checks:
                verdict, reason = "not used", "; ".join(sorted({c.reason for c in checks}))
            else:
                verdict, reason = "not tried", self._absent(backend)
            verdicts.append({"backend": name, "verdict": verdict, "reason": reason})
        return verdicts

    def _absent(self, backend: Backend) -> str:
        """Why discovery found no device for a backend (its notes say), in plain words."""
        notes = [
            note
            for note in self.matrix.notes
            if (note.startswith("no NVIDIA") and Vendor.NVIDIA in backend.devices)
            or (
                note.startswith("no Intel or AMD")
                and {Vendor.INTEL, Vendor.AMD} & {*backend.devices}
            )
        ]
        vendors = " or ".join(v.value for v in backend.devices)
        return "; ".join(notes) if notes else f"no {vendors} GPU found"

    def can_encode(self, name: str, device: Device, codec: str) -> bool:
        """The one answer to "can hardware backend ``name`` encode ``codec`` on ``device``
        here": its kind of device, the probe's test encode, and not lost since."""
        backend = self.backends[name]
        return (
            backend.hardware
            and device.vendor in backend.devices
            and not self.out_of_use(device.id)
            and self.matrix.encodes(device.id, name, codec)
        )

    def best_on(self, device: Device, codec: str) -> str:
        """The backend ``device`` would encode ``codec`` with (software when none)."""
        return next((n for n in self.preference if self.can_encode(n, device, codec)), "software")

    def devices_for(self, codec: str) -> list[Device]:
        """Devices whose hardware encodes ``codec``, in preference order, none twice."""
        found: list[Device] = []
        for name in self.preference:
            for device in self.matrix.devices:
                if device not in found and self.can_encode(name, device, codec):
                    found.append(device)
        return found

    def ladder(self, profile: Profile, media: MediaInfo, device: str | None = None) -> list[Target]:
        """The encoders to try for a job, best first: hardware decode and encode, then
        software decode with hardware encode, then the CPU (unless the profile forbids).
        With ``device`` (where the scheduler placed the job) only that device's hardware."""
        policy, codec = profile.hardware, profile.video.codec
        self._refuse_dovi(media)
        rungs: list[Target] = []
        if policy is not HardwarePolicy.SOFTWARE and media.video is not None and device != "cpu":
            for name in self.preference:
                backend = self.backends[name]
                for gpu in self.matrix.devices:
                    if device is not None and gpu.id != device:
                        continue
                    if not self.can_encode(name, gpu, codec):
                        continue
                    if self._can_decode(backend, gpu, media):
                        rungs.append(Target(backend, gpu, hw_decode=True))
                    rungs.append(Target(backend, gpu, hw_decode=False))
        if policy is not HardwarePolicy.REQUIRE_HW:
            rungs.append(Target(self.backends["software"]))
        if not rungs:
            raise PlanError(self.none_works(profile))
        return rungs

    def none_works(self, profile: Profile) -> str:
        """Why a profile that requires hardware cannot run on this host."""
        reasons = sorted({c.reason for c in self.matrix.checks if not c.ok})
        return (
            f"profile {profile.name} requires a hardware encoder and none works for "
            f"{profile.video.codec}" + (f" ({'; '.join(reasons)})" if reasons else "")
        )

    def _refuse_dovi(self, media: MediaInfo) -> None:
        """Dolby Vision profile 5 is only converted by libplacebo: without a working one,
        say so rather than write a green and purple picture."""
        if media.video is None or not media.video.dovi_only:
            return
        check = self.matrix.filter_check(LIBPLACEBO)
        if check is None or not check.ok:
            why = check.reason if check is not None else "not probed"
            raise PlanError(
                "the source is Dolby Vision profile 5 (no HDR10 or SDR base layer): only "
                "libplacebo on a GPU's Vulkan driver can convert it, and this host's test "
                f"of it failed ({why}); give the server a GPU with Vulkan (Mesa's "
                "mesa-vulkan-drivers for Intel/AMD, the NVIDIA driver with the 'graphics' "
                "capability), or pick another version of the film"
            )

    def _can_decode(self, backend: Backend, gpu: Device, media: MediaInfo) -> bool:
        """A hardware-decode rung only where it can work: a codec, bit depth and chroma
        the probe proved, the deinterlacer and the tone-mapper this source needs."""
        video = media.video
        assert video is not None
        decode = backend.decode
        if (
            decode is None
            or not hw_decodable(video)
            or not self.matrix.decodes(gpu.id, backend.name, source_key(media))
        ):
            return False
        if video.interlaced and not self.matrix.deinterlaces(gpu.id, backend.name):
            return False
        if video.hdr:  # tone-mapping on the device needs the filter in this ffmpeg
            return (
                decode.tonemap is not None
                and device_tonemaps(decode, gpu, video)
                and filter_names(decode.tonemap) <= self.matrix.filters
            )
        return True

    def out_of_use(self, device: str) -> bool:
        return self._open_until.get(device, 0.0) > self.clock()

    def trip(self, device: str, reason: str) -> None:
        """Stop using a device for a while, and probe the host again in the background."""
        log.warning("device %s taken out of use for %g s: %s", device, self.breaker_seconds, reason)
        self._open_until[device] = self.clock() + self.breaker_seconds
        if self._reprobe is None or self._reprobe.done():
            self._reprobe = asyncio.create_task(self.load(refresh=True), name="reprobe")

    async def close(self) -> None:
        if self._reprobe is not None:
            self._reprobe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reprobe

    def describe(self) -> dict[str, Any]:
        """The matrix and the breakers, for GET /hardware."""
        data = self.matrix.to_json()
        now = self.clock()
        data["preference"] = self.preference
        data["outOfUse"] = {d: round(t - now) for d, t in self._open_until.items() if t > now}
        data["summary"] = self.summary()
        data["backends"] = self.verdicts()
        return data
