"""The one NVML wrapper (``nvidia-ml-py``): the GPUs and driver for discovery, and each GPU's
encoder load and sessions for the scheduler.

NVML is opened on first use and stays open until ``close()``; any NVML failure closes it
and raises ``NvmlUnavailable`` ("no NVIDIA GPU", or "GPU lost"): the server keeps serving on
the CPU, never crashes. The next call opens it again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


class NvmlUnavailable(Exception):
    """No NVIDIA driver, no GPU, or NVML lost: no NVIDIA backend, never a crash."""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    encoder_capacity: int | None  # NVML's H.264 encoder capacity, percent; 0: no NVENC
    uuid: str = ""


@dataclass(frozen=True, slots=True)
class GpuReading:
    encoder_percent: float | None  # None where NVML cannot say (MIG instances)
    sessions: int  # encode sessions on this GPU, ours included


class Nvml:
    def __init__(self, module: ModuleType | None = None) -> None:
        self._module = module  # a stand-in in tests; the real pynvml otherwise
        self._open = False

    def _nv(self) -> Any:
        if self._module is None:
            try:
                import pynvml
            except ImportError as exc:
                raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from None
            self._module = pynvml
        nv = self._module
        if not self._open:
            try:
                nv.nvmlInit()
            except nv.NVMLError as exc:
                raise NvmlUnavailable(f"NVML could not start: {exc}") from None
            self._open = True
        return nv

    def devices(self) -> tuple[str, list[GpuInfo]]:
        """The driver version and the GPUs (for discovery)."""
        nv = self._nv()
        try:
            gpus = []
            for index in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                try:
                    capacity: int | None = int(
                        nv.nvmlDeviceGetEncoderCapacity(handle, nv.NVML_ENCODER_QUERY_H264)
                    )
                except nv.NVMLError:
                    capacity = None
                name, uuid = nv.nvmlDeviceGetName(handle), nv.nvmlDeviceGetUUID(handle)
                gpus.append(GpuInfo(index, _text(name), capacity, _text(uuid)))
            return _text(nv.nvmlSystemGetDriverVersion()), gpus
        except nv.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML failed: {exc}") from None

    def read(self, index: int) -> GpuReading:
        """Encoder utilisation and sessions of one GPU (for the load monitor)."""
        nv = self._nv()
        try:
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
        if self._open and self._module is not None:
            with contextlib.suppress(self._module.NVMLError):
                self._module.nvmlShutdown()
        self._open = False


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
