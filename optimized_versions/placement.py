"""Which device a job runs on: slots per device, live load, and spilling to the CPU.

Capacity per device: NVENC's per-system session cap (from the driver version, less the
sessions other processes hold now), a configured number for QSV/VAAPI devices, and a
configured number for the CPU. A device takes a job only while it has a free slot and its
load (and the host's) is under the thresholds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .devices import Device
from .hardware import Hardware
from .load import LoadMonitor
from .profiles import Profile

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


class Placement:
    def __init__(self, hardware: Hardware, monitor: LoadMonitor, slots: SlotConfig) -> None:
        self.hardware = hardware
        self.monitor = monitor
        self.slots = slots
        self.used: dict[str, int] = {}
        self._shrunk: dict[str, int] = {}  # after a session-cap error, until the next reading

    def capacity(self, device: Device) -> int:
        if device.vendor == "cpu":
            return self.slots.cpu
        if device.vendor != "nvidia":
            return self.slots.gpu
        cap = self.slots.nvenc_sessions or nvenc_session_cap(device.driver)
        sessions = self.monitor.sessions.get(device.index)
        others = max(0, sessions - self.used.get(device.id, 0)) if sessions is not None else 0
        return min(cap - others, self._shrunk.get(device.id, cap))

    def free(self, device: Device) -> int:
        return self.capacity(device) - self.used.get(device.id, 0)

    def candidates(self, profile: Profile) -> list[Device]:
        """Devices that can encode the profile, best first; the CPU last when allowed."""
        found: list[Device] = []
        if profile.hardware != "software":
            found = self.hardware.devices_for(profile.video.codec)
        if profile.hardware != "require_hw" and (not found or self.slots.spill_to_cpu):
            found.append(next(d for d in self.hardware.matrix.devices if d.vendor == "cpu"))
        return found

    def place(self, profile: Profile) -> Device | str:
        """A device with a free slot and room in its load, or why the job must wait."""
        if low := self.monitor.disk_low():
            return low
        if busy := self.monitor.cpu_busy():  # every job costs the host some CPU and memory
            return busy
        candidates = self.candidates(profile)
        if not candidates:
            return f"no device can encode {profile.video.codec} for profile {profile.name}"
        reasons = []
        for device in candidates:
            if self.free(device) <= 0:
                reasons.append(f"no free slot on {device.id}")
            elif device.vendor == "nvidia" and (busy := self.monitor.gpu_busy(device.index)):
                reasons.append(f"{device.id}: {busy}")
            else:
                return device
        return "; ".join(reasons)

    def claim(self, device: str) -> None:
        self.used[device] = self.used.get(device, 0) + 1

    def release(self, device: str) -> None:
        self.used[device] = max(0, self.used.get(device, 0) - 1)

    def shrink(self, device: str) -> None:
        """Another process took an NVENC session: believe the device is full for now."""
        self._shrunk[device] = max(0, self.used.get(device, 0) - 1)  # its slot went too
        log.info(
            "%s: session cap reached, capacity %d until the next reading",
            device,
            self._shrunk[device],
        )

    def refreshed(self) -> None:
        """A new load reading came: the session counts are current again."""
        self._shrunk.clear()

    def describe(self) -> dict[str, Any]:
        monitor = self.monitor
        devices = {}
        for device in self.hardware.matrix.devices:
            entry: dict[str, Any] = {
                "slots": self.capacity(device),
                "used": self.used.get(device.id, 0),
            }
            if device.vendor == "nvidia":
                entry["encoderPercent"] = monitor.encoder.get(device.index)
                entry["sessions"] = monitor.sessions.get(device.index)
                entry["busy"] = monitor.gpu_busy(device.index)
            devices[device.id] = entry
        return {
            "cpuPercent": None if monitor.cpu is None else round(monitor.cpu, 1),
            "memoryAvailablePercent": None if monitor.memory is None else round(monitor.memory, 1),
            "diskFreeBytes": monitor.disk_free,
            "hostBusy": monitor.cpu_busy() or monitor.disk_low(),
            "devices": devices,
        }
