"""Live load: CPU, memory and disk (psutil), and each NVIDIA GPU's encoder (NVML).

One owner: ``LoadMonitor.sample()`` takes a reading of everything, smooths it (exponential
moving average), updates the "busy" verdicts (with hysteresis, so that jobs do not flap on
and off at a threshold) and calls ``on_change`` (the scheduler's wake) when anything the
scheduler decides on has changed. ``run()`` samples on an interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from ..waits import Hold, Why
from .nvml import GpuReading, NvmlUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostReading:
    cpu_percent: float
    memory_available_percent: float
    disk_free_bytes: int


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
        nvidia: Callable[[], list[int]] = list,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._host, self._gpus = host, gpus
        self._cache_dir = cache_dir
        self._nvidia = nvidia  # the NVML indexes of the GPUs in use now
        self.limits = limits
        self.on_change = on_change
        self.generation = 0  # readings taken; beliefs made between two readings end here
        self._pending = False  # a belief was set: the next reading must wake the scheduler
        self.cpu: float | None = None
        self.memory: float | None = None
        self.disk_free: int | None = None
        self.encoder: dict[int, float] = {}  # NVIDIA index -> smoothed utilisation
        self.sessions: dict[int, int] = {}  # NVIDIA index -> sessions now (all processes)
        self._cpu = Latch(limits.cpu_high, limits.hysteresis)
        self._memory = Latch(-limits.memory_low, limits.hysteresis)  # low available = busy
        self._gpu: dict[int, Latch] = {}

    async def run(self, interval: float) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.sample()

    def close(self) -> None:
        self._gpus.close()

    def expect_change(self) -> None:
        """Something believed about the devices holds only until the next reading (a
        session cap was hit): that reading must wake the scheduler."""
        self._pending = True

    def sample(self) -> None:
        """Take one reading of everything; wakes the scheduler when a verdict or a
        session count changes."""
        nvidia = self._nvidia()
        before = self._state(nvidia)
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
            self._read_gpu(index)
        self.generation += 1
        if self._state(nvidia) != before or self._pending:
            self._pending = False
            self.on_change()

    def _read_gpu(self, index: int) -> None:
        try:
            gpu = self._gpus.read(index)
        except NvmlUnavailable as exc:
            log.debug("GPU %d: %s", index, exc)
            self.sessions.pop(index, None)
            return
        self.sessions[index] = gpu.sessions
        if gpu.encoder_percent is not None:
            value = _smooth(self.encoder.get(index), gpu.encoder_percent, self.limits.smoothing)
            self.encoder[index] = value
            latch = self._gpu.setdefault(index, Latch(self.limits.gpu_high, self.limits.hysteresis))
            latch.update(value)

    def _state(self, nvidia: list[int]) -> tuple[object, ...]:
        gpus = tuple((self.gpu_busy(i), self.sessions.get(i)) for i in nvidia)
        return (self.cpu_busy(), self.disk_low(), gpus)

    def cpu_busy(self) -> Hold | None:
        """Why the host is too busy for another job, or None."""
        if self._memory.busy:
            return Hold.of(Why.MEMORY, memory=self.memory)
        if self._cpu.busy:
            return Hold.of(Why.CPU, cpu=self.cpu, limit=self.limits.cpu_high)
        return None

    def gpu_busy(self, index: int) -> Hold | None:
        latch = self._gpu.get(index)
        if latch is not None and latch.busy:
            return Hold.of(Why.GPU, percent=self.encoder[index], limit=self.limits.gpu_high)
        return None

    def disk_low(self) -> Hold | None:
        if self.disk_free is not None and self.disk_free < self.limits.min_free_space:
            free, needed = self.disk_free / 1024**3, self.limits.min_free_space / 1024**3
            return Hold.of(Why.DISK, free=free, needed=needed)
        return None


def default_cpu_slots() -> int:
    """One software job per four cores: x264 uses every core it is given."""
    return max(1, (os.cpu_count() or 1) // 4)
