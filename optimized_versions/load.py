"""Live load: CPU, memory and disk (psutil), and each NVIDIA GPU's encoder (NVML).

Readings come through injectable readers, are smoothed (exponential moving average) and
turned into "busy" verdicts with hysteresis, so that jobs do not flap on and off at a
threshold. The scheduler asks these verdicts before it starts a job.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from .devices import NvmlUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostReading:
    cpu_percent: float
    memory_available_percent: float
    disk_free_bytes: int


@dataclass(frozen=True, slots=True)
class GpuReading:
    encoder_percent: float | None  # None where NVML cannot say (MIG instances)
    sessions: int  # encode sessions on this GPU, ours included


class HostReader(Protocol):
    def read(self, cache_dir: Path) -> HostReading: ...


class GpuReader(Protocol):
    def read(self, index: int) -> GpuReading:
        """Raises NvmlUnavailable when the GPU or NVML is gone."""
        ...

    def close(self) -> None: ...


class PsutilReader:
    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def read(self, cache_dir: Path) -> HostReading:
        memory = psutil.virtual_memory()
        return HostReading(
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_available_percent=100.0 * memory.available / memory.total,
            disk_free_bytes=psutil.disk_usage(str(cache_dir)).free,
        )


class NvmlGpuReader:
    """Encoder utilisation and sessions through nvidia-ml-py; NVML stays open while used."""

    def __init__(self) -> None:
        self._open = False

    def read(self, index: int) -> GpuReading:
        try:
            import pynvml as nv
        except ImportError as exc:
            raise NvmlUnavailable(str(exc)) from None
        try:
            if not self._open:
                nv.nvmlInit()
                self._open = True
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            sessions = int(nv.nvmlDeviceGetEncoderStats(handle)[0])
            try:
                percent: float | None = float(nv.nvmlDeviceGetEncoderUtilization(handle)[0])
            except nv.NVMLError:  # not supported on MIG instances
                percent = None
            return GpuReading(encoder_percent=percent, sessions=sessions)
        except nv.NVMLError as exc:  # "GPU lost": keep serving on the CPU
            self.close()
            raise NvmlUnavailable(f"NVML failed: {exc}") from None

    def close(self) -> None:
        if self._open:
            import pynvml as nv

            with contextlib.suppress(nv.NVMLError):
                nv.nvmlShutdown()
            self._open = False


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_high: float = 85.0  # percent, smoothed
    memory_low: float = 10.0  # percent available
    gpu_high: float = 90.0  # percent encoder utilisation
    hysteresis: float = 10.0  # a busy verdict ends only this far below the threshold
    min_free_space: int = 2 * 1024**3  # bytes free in the cache folder
    smoothing: float = 0.5  # weight of the newest reading


class Latch:
    """Busy at or above ``high``; free again only at or below ``high - hysteresis``."""

    def __init__(self, high: float, hysteresis: float) -> None:
        self.high, self.low = high, high - hysteresis
        self.busy = False

    def update(self, value: float) -> bool:
        if self.busy and value <= self.low:
            self.busy = False
        elif not self.busy and value >= self.high:
            self.busy = True
        return self.busy


def _smooth(previous: float | None, value: float, weight: float) -> float:
    return value if previous is None else weight * value + (1 - weight) * previous


class LoadMonitor:
    def __init__(
        self,
        host: HostReader,
        gpus: GpuReader,
        cache_dir: Path,
        limits: Limits,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._host, self._gpus = host, gpus
        self._cache_dir = cache_dir
        self.limits = limits
        self.on_change = on_change
        self.cpu: float | None = None
        self.memory: float | None = None
        self.disk_free: int | None = None
        self.encoder: dict[int, float] = {}  # NVIDIA index -> smoothed utilisation
        self.sessions: dict[int, int] = {}  # NVIDIA index -> sessions now (all processes)
        self._cpu = Latch(limits.cpu_high, limits.hysteresis)
        self._memory = Latch(-limits.memory_low, limits.hysteresis)  # low available = busy
        self._gpu: dict[int, Latch] = {}

    def close(self) -> None:
        self._gpus.close()

    def sample(self, nvidia: list[int]) -> None:
        """Take one reading of everything; wakes the scheduler when a verdict changes."""
        before = self.verdicts(nvidia)
        try:
            reading = self._host.read(self._cache_dir)
        except OSError as exc:  # the cache folder vanished, say: keep the last values
            log.warning("load reading failed: %s", exc)
        else:
            self.cpu = _smooth(self.cpu, reading.cpu_percent, self.limits.smoothing)
            self.memory = _smooth(
                self.memory, reading.memory_available_percent, self.limits.smoothing
            )
            self.disk_free = reading.disk_free_bytes
            self._cpu.update(self.cpu)
            self._memory.update(-self.memory)
        for index in nvidia:
            try:
                gpu = self._gpus.read(index)
            except NvmlUnavailable as exc:
                log.debug("GPU %d: %s", index, exc)
                self.sessions.pop(index, None)
                continue
            self.sessions[index] = gpu.sessions
            if gpu.encoder_percent is not None:
                value = _smooth(self.encoder.get(index), gpu.encoder_percent, self.limits.smoothing)
                self.encoder[index] = value
                latch = self._gpu.setdefault(
                    index, Latch(self.limits.gpu_high, self.limits.hysteresis)
                )
                latch.update(value)
        if self.verdicts(nvidia) != before:
            self.on_change()

    def verdicts(self, nvidia: list[int]) -> tuple[object, ...]:
        return (self.cpu_busy(), self.disk_low(), tuple(self.gpu_busy(i) for i in nvidia))

    def cpu_busy(self) -> str | None:
        """Why the host is too busy for another CPU job, or None."""
        if self._memory.busy:
            return f"memory low ({self.memory:.0f}% available)"
        if self._cpu.busy:
            return f"CPU above threshold ({self.cpu:.0f}% >= {self.limits.cpu_high:g}%)"
        return None

    def gpu_busy(self, index: int) -> str | None:
        latch = self._gpu.get(index)
        if latch is not None and latch.busy:
            return f"GPU encoder busy ({self.encoder[index]:.0f}% >= {self.limits.gpu_high:g}%)"
        return None

    def disk_low(self) -> str | None:
        if self.disk_free is not None and self.disk_free < self.limits.min_free_space:
            return (
                f"disk floor: {self.disk_free / 1024**3:.1f} GiB free in the cache folder, "
                f"{self.limits.min_free_space / 1024**3:.1f} GiB needed"
            )
        return None


def default_cpu_slots() -> int:
    """One software job per four cores: x264 uses every core it is given."""
    return max(1, (os.cpu_count() or 1) // 4)
