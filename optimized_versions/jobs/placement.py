"""Where a job runs: slots per device, live load, and spilling to the CPU. The one owner of
that decision: the scheduler asks ``place`` before a job starts and ``move`` when the ladder
steps a running job down to another device.

Capacity per device: NVENC's per-system session cap (from the driver version, less the
sessions other processes hold now), a configured number for QSV/VAAPI devices, and a
configured number for the CPU. A device takes a job only while it has a free slot and its
load (and the host's) is under the thresholds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..catalog.device import Device, Vendor
from ..catalog.profiles import HardwarePolicy, Profile
from ..config import Config
from ..hardware.ladder import Hardware
from ..hardware.load import GpuReader, HostReader, Limits, LoadMonitor, default_cpu_slots
from ..waits import Hold, Why, several

log = logging.getLogger(__name__)

# GeForce drivers cap concurrent NVENC sessions per system (hardware.md).
_SESSION_CAPS = [(530, 3), (550, 5), (590, 8)]


def nvenc_session_cap(driver: str | None) -> int:
    try:
        major = int((driver or "").split(".")[0])
    except ValueError:
        return 3  # unknown driver: the most careful cap
    return next((cap for below, cap in _SESSION_CAPS if major < below), 12)


@dataclass(frozen=True, slots=True)
class SlotConfig:
    cpu: int
    gpu: int = 2  # per QSV/VAAPI device
    nvenc_sessions: int | None = None  # None: from the driver version
    spill_to_cpu: bool = True
    overall: int | None = None  # MAX_CONCURRENT_JOBS on the server; a worker host: slots alone
    local: bool = True  # LOCAL_JOBS: false, this server's devices take no job


@dataclass(frozen=True, slots=True)
class Placed:
    device: Device


@dataclass(frozen=True, slots=True)
class Wait:
    reason: Hold


Placement = Placed | Wait


class Placer:
    def __init__(self, hardware: Hardware, monitor: LoadMonitor, slots: SlotConfig) -> None:
        self.hardware = hardware
        self.monitor = monitor
        self.slots = slots
        self.used: dict[str, int] = {}
        self._shrunk: dict[str, tuple[int, int]] = {}  # device -> (reading, capacity)

    def capacity(self, device: Device) -> int:
        if device.vendor is Vendor.CPU:
            return self.slots.cpu
        if device.vendor is not Vendor.NVIDIA:
            return self.slots.gpu
        cap = self.slots.nvenc_sessions or nvenc_session_cap(device.driver)
        sessions = self.monitor.sessions.get(device.index)
        others = max(0, sessions - self.used.get(device.id, 0)) if sessions is not None else 0
        reading, shrunk = self._shrunk.get(device.id, (-1, cap))
        if reading != self.monitor.generation:  # a new reading has come since
            shrunk = cap
        return min(cap - others, shrunk)

    def free(self, device: Device) -> int:
        return self.capacity(device) - self.used.get(device.id, 0)

    def candidates(self, profile: Profile, only: str | None = None) -> list[Device]:
        """Devices that can encode the profile, best first; the CPU last when allowed.
        With ``only``, that device alone (a job that fell back to it)."""
        found: list[Device] = []
        if profile.hardware is not HardwarePolicy.SOFTWARE:
            found = self.hardware.devices_for(profile.video.codec)
        if profile.hardware is not HardwarePolicy.REQUIRE_HW and (
            not found or self.slots.spill_to_cpu or only is not None
        ):
            found.append(self.cpu)
        return [d for d in found if only is None or d.id == only]

    @property
    def cpu(self) -> Device:
        return next(d for d in self.hardware.matrix.devices if d.vendor is Vendor.CPU)

    def never(self, profile: Profile) -> str | None:
        """Why no device here will ever run ``profile`` (it requires hardware that none
        has), or None."""
        return None if self.candidates(profile) else self.hardware.none_works(profile)

    def place(self, profile: Profile, only: str | None = None) -> Placement:
        """A device with a free slot and room in its load, or why the job must wait: this
        server runs no jobs (LOCAL_JOBS), every job slot is taken (MAX_CONCURRENT_JOBS), no
        device here will ever do, or each that could is full or busy."""
        if not self.slots.local:
            return Wait(Hold.of(Why.LOCAL_OFF))
        if self.slots.overall is not None and sum(self.used.values()) >= self.slots.overall:
            return Wait(Hold.of(Why.ALL_SLOTS, slots=self.slots.overall))
        if (never := self.never(profile)) is not None:
            return Wait(Hold.of(Why.NO_HARDWARE, reason=never))
        if low := self.monitor.disk_low():
            return Wait(low)
        if busy := self.monitor.cpu_busy():  # every job costs the host some CPU and memory
            return Wait(busy)
        candidates = self.candidates(profile, only)
        if not candidates:
            codec, name = profile.video.codec, profile.name
            return Wait(Hold.of(Why.NO_DEVICE, codec=codec, profile=name))
        reasons = []
        for device in candidates:
            if why := self._full(device):
                reasons.append(why)
            else:
                return Placed(device)
        return Wait(several(reasons))

    def _full(self, device: Device) -> Hold | None:
        if self.free(device) <= 0:
            return Hold.of(Why.NO_SLOT, device=device.id)
        if device.vendor is Vendor.NVIDIA and (busy := self.monitor.gpu_busy(device.index)):
            return busy.on(device.id)
        return None

    def claim(self, device: str) -> None:
        self.used[device] = self.used.get(device, 0) + 1

    def release(self, device: str) -> None:
        self.used[device] = max(0, self.used.get(device, 0) - 1)

    def move(self, source: str, target: Device) -> Hold | None:
        """A running job steps down from ``source`` to ``target`` (the ladder's next rung):
        take a slot there and give back the one held. Returns why not when ``target`` has
        no free slot (the job must then wait for one in the queue)."""
        if target.id == source:
            return None
        if why := self._full(target):
            return why
        self.claim(target.id)
        self.release(source)
        return None

    def shrink(self, device: str) -> None:
        """Another process took an NVENC session: believe the device is full until the
        next load reading."""
        capacity = max(0, self.used.get(device, 0) - 1)  # its slot went too
        self._shrunk[device] = (self.monitor.generation, capacity)
        self.monitor.expect_change()
        log.info("%s: session cap reached, capacity %d until the next reading", device, capacity)

    def describe(self) -> dict[str, Any]:
        monitor = self.monitor
        devices = {}
        for device in self.hardware.matrix.devices:
            entry: dict[str, Any] = {
                "slots": self.capacity(device),
                "used": self.used.get(device.id, 0),
            }
            if device.vendor is Vendor.NVIDIA:
                entry["encoderPercent"] = monitor.encoder.get(device.index)
                entry["sessions"] = monitor.sessions.get(device.index)
                entry["busy"] = _words(monitor.gpu_busy(device.index))
            devices[device.id] = entry
        return {
            "cpuPercent": None if monitor.cpu is None else round(monitor.cpu, 1),
            "memoryAvailablePercent": None if monitor.memory is None else round(monitor.memory, 1),
            "diskFreeBytes": monitor.disk_free,
            "hostBusy": _words(monitor.cpu_busy() or monitor.disk_low()),
            "devices": devices,
        }


class SlotLease:
    """A running job's slot: on one device at a time, moved only through placement."""

    def __init__(self, placer: Placer, device: str) -> None:
        self._placer = placer
        self.device = device

    @classmethod
    def claim(cls, placer: Placer, device: str) -> SlotLease:
        """Take a slot on ``device`` (placement said it has one free)."""
        placer.claim(device)
        return cls(placer, device)

    def move(self, target: Device) -> Hold | None:
        why = self._placer.move(self.device, target)
        if why is None:
            self.device = target.id
        return why

    def release(self) -> None:
        self._placer.release(self.device)


def placer_from(
    config: Config,
    hardware: Hardware,
    readers: tuple[HostReader, GpuReader],
    *,
    worker: bool = False,
) -> Placer:
    """Slots and load gates as configured: the server's, and a worker host's alike (on
    which its slots alone cap the jobs, and LOCAL_JOBS does not apply)."""
    limits = Limits(
        cpu_high=config.cpu_high,
        memory_low=config.memory_low,
        gpu_high=config.gpu_high,
        hysteresis=config.load_hysteresis,
        min_free_space=config.min_free_space,
    )
    monitor = LoadMonitor(
        *readers,
        config.cache_dir,
        limits,
        nvidia=lambda: [d.index for d in hardware.matrix.devices if d.vendor is Vendor.NVIDIA],
    )
    slots = SlotConfig(
        cpu=config.cpu_slots or default_cpu_slots(),
        gpu=config.gpu_slots,
        nvenc_sessions=config.nvenc_sessions,
        spill_to_cpu=config.spill_to_cpu,
        overall=None if worker else config.max_concurrent_jobs,
        local=worker or config.local_jobs,
    )
    return Placer(hardware, monitor, slots)


def _words(hold: Hold | None) -> str | None:
    return None if hold is None else str(hold)
