"""The devices a backend can run on: the CPU, NVIDIA GPUs (NVML), DRI render nodes.

Every reading goes through a reader that tests replace, so any host can be presented.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

PCI_VENDORS = {"0x8086": "intel", "0x1002": "amd", "0x10de": "nvidia"}


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # "cpu", "nvidia:0", "dri:renderD128"
    vendor: str  # cpu, nvidia, intel, amd
    name: str
    index: int = 0  # the CUDA/NVML index of an NVIDIA GPU
    render_node: str | None = None
    driver: str | None = None
    encoder_capacity: int | None = None  # NVML's H.264 encoder capacity, percent
    problem: str | None = None  # why it cannot be used, in plain words

    @property
    def usable(self) -> bool:
        return self.problem is None


CPU = Device(id="cpu", vendor="cpu", name="CPU")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    encoder_capacity: int | None


class NvmlReader(Protocol):
    def read(self) -> tuple[str, list[GpuInfo]]:
        """The driver version and the GPUs; raises NvmlUnavailable."""
        ...


class NvmlUnavailable(Exception):
    """No NVIDIA driver, no GPU, or NVML lost: no NVIDIA backend, never a crash."""


class Pynvml:
    """The real reader, through ``nvidia-ml-py``; NVML is opened and closed per reading."""

    def read(self) -> tuple[str, list[GpuInfo]]:
        try:
            import pynvml as nv
        except ImportError as exc:
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from None
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise NvmlUnavailable(f"NVML could not start: {exc}") from None
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
                gpus.append(GpuInfo(index, str(nv.nvmlDeviceGetName(handle)), capacity))
            return str(nv.nvmlSystemGetDriverVersion()), gpus
        except nv.NVMLError as exc:
            raise NvmlUnavailable(f"NVML failed: {exc}") from None
        finally:
            with contextlib.suppress(nv.NVMLError):
                nv.nvmlShutdown()


@dataclass(frozen=True, slots=True)
class Host:
    """Where discovery looks: replaced in tests to present any machine."""

    nvml: NvmlReader
    sys_drm: Path = Path("/sys/class/drm")
    readable: Callable[[str], bool] = lambda path: os.access(path, os.R_OK | os.W_OK)


def nvidia_devices(nvml: NvmlReader) -> tuple[list[Device], str | None]:
    """NVIDIA GPUs, or none and the reason."""
    try:
        driver, gpus = nvml.read()
    except NvmlUnavailable as exc:
        return [], str(exc)
    return [
        Device(
            id=f"nvidia:{g.index}",
            vendor="nvidia",
            name=g.name,
            index=g.index,
            driver=driver,
            encoder_capacity=g.encoder_capacity,
        )
        for g in gpus
    ], None


def render_nodes(host: Host) -> list[Device]:
    """DRI render nodes of Intel and AMD GPUs, by PCI vendor (node numbers can swap)."""
    found = []
    for node in sorted(host.sys_drm.glob("renderD*")):
        try:
            vendor_id = (node / "device" / "vendor").read_text().strip()
        except OSError:
            continue
        vendor = PCI_VENDORS.get(vendor_id)
        if vendor is None or vendor == "nvidia":  # NVIDIA is driven through CUDA, not VAAPI
            continue
        path = f"/dev/dri/{node.name}"
        try:
            driver = (node / "device" / "driver").resolve().name
        except OSError:
            driver = None
        problem = None
        if not host.readable(path):
            problem = (
                f"render node {path} not readable: add the container to the render "
                "group (--group-add) and pass the device (--device /dev/dri)"
            )
        found.append(
            Device(
                id=f"dri:{node.name}",
                vendor=vendor,
                name=f"{vendor} GPU",
                render_node=path,
                driver=driver,
                problem=problem,
            )
        )
    return found


def discover(host: Host) -> tuple[list[Device], list[str]]:
    """Every device, the CPU first, and notes on what was not found and why."""
    notes = []
    nvidia, why = nvidia_devices(host.nvml)
    if why:
        notes.append(f"no NVIDIA GPU: {why}")
    dri = render_nodes(host)
    if not dri:
        notes.append(f"no Intel or AMD render node under {host.sys_drm}")
    return [CPU, *nvidia, *dri], notes
