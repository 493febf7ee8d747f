"""The one NVML wrapper against a stand-in for the ``pynvml`` module (the library boundary):
discovery readings, encoder load and sessions, MIG, and a GPU lost mid-run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from conftest import FakeHostLoad

from optimized_versions.hardware.load import Limits, LoadMonitor
from optimized_versions.hardware.nvml import GpuInfo, GpuReading, Nvml, NvmlUnavailable


class NVMLError(Exception):
    pass


@dataclass
class FakePynvml:
    """Answers like nvidia-ml-py for the GPUs given; ``lost`` makes every call fail."""

    gpus: list[dict[str, Any]]
    lost: bool = False
    inits: int = 0
    shutdowns: int = 0
    NVMLError: type[Exception] = NVMLError
    NVML_ENCODER_QUERY_H264: int = 0
    calls: list[str] = field(default_factory=list)

    def _check(self) -> None:
        if self.lost:
            raise NVMLError("GPU is lost")

    def nvmlInit(self) -> None:
        if self.lost:
            raise NVMLError("Driver Not Loaded")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.14"

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimpleNamespace:
        self._check()
        return SimpleNamespace(**self.gpus[index])

    def nvmlDeviceGetName(self, h: SimpleNamespace) -> bytes:
        return str(h.name).encode()  # older bindings answer bytes

    def nvmlDeviceGetUUID(self, h: SimpleNamespace) -> str:
        return str(h.uuid)

    def nvmlDeviceGetEncoderCapacity(self, h: SimpleNamespace, _: int) -> int:
        return int(h.capacity)

    def nvmlDeviceGetEncoderStats(self, h: SimpleNamespace) -> tuple[int, int, int]:
        self._check()
        return (int(h.sessions), 120, 900)

    def nvmlDeviceGetEncoderUtilization(self, h: SimpleNamespace) -> list[int]:
        if h.mig:
            raise NVMLError("Not Supported")
        return [int(h.percent), 167000]


def _gpu(name: str, **kw: Any) -> dict[str, Any]:
    base = {"name": name, "uuid": f"GPU-{name}", "capacity": 100, "sessions": 0, "percent": 0}
    return {**base, "mig": False, **kw}


def test_discovery_readings() -> None:
    nv = FakePynvml([_gpu("RTX 4070"), _gpu("H100", capacity=0)])
    driver, gpus = Nvml(cast(Any, nv)).devices()
    assert driver == "550.54.14"
    assert gpus == [
        GpuInfo(0, "RTX 4070", 100, "GPU-RTX 4070"),
        GpuInfo(1, "H100", 0, "GPU-H100"),
    ]


def test_load_readings_and_mig() -> None:
    nv = FakePynvml([_gpu("RTX", sessions=2, percent=37), _gpu("A100 MIG", mig=True)])
    nvml = Nvml(cast(Any, nv))
    assert nvml.read(0) == GpuReading(encoder_percent=37.0, sessions=2)
    assert nvml.read(1) == GpuReading(encoder_percent=None, sessions=0), "MIG: no utilisation"
    assert nv.inits == 1, "NVML stays open between readings"
    nvml.close()
    nvml.close()
    assert nv.shutdowns == 1


def test_a_lost_gpu_closes_nvml_and_a_later_reading_opens_it_again() -> None:
    nv = FakePynvml([_gpu("RTX", sessions=1, percent=10)])
    nvml = Nvml(cast(Any, nv))
    nvml.read(0)
    nv.lost = True
    with pytest.raises(NvmlUnavailable, match="NVML failed: GPU is lost"):
        nvml.read(0)
    assert nv.shutdowns == 1
    with pytest.raises(NvmlUnavailable, match="NVML could not start: Driver Not Loaded"):
        nvml.devices()
    nv.lost = False
    assert nvml.read(0).sessions == 1 and nv.inits == 2


def test_the_monitor_reads_sessions_and_keeps_serving_when_nvml_goes(tmp_path: Path) -> None:
    nv = FakePynvml([_gpu("RTX", sessions=3, percent=96)])
    woken: list[int] = []
    monitor = LoadMonitor(
        FakeHostLoad(),
        Nvml(cast(Any, nv)),
        tmp_path,
        Limits(),
        nvidia=lambda: [0],
        on_change=lambda: woken.append(1),
    )
    monitor.sample()
    assert monitor.sessions == {0: 3} and monitor.gpu_busy(0) is not None
    assert woken == [1]
    nv.lost = True
    monitor.sample()  # no exception: the GPU is gone, the CPU keeps working
    assert monitor.sessions == {} and monitor.cpu_busy() is None
    assert woken == [1, 1], "a GPU that vanished changes what the scheduler may do"
