"""Discovery: the CPU, NVIDIA GPUs (through NVML), Intel and AMD render nodes (by PCI vendor).

Every reading goes through a reader that tests replace, so any host can be presented.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..catalog.device import CPU, Device, Vendor
from .nvml import GpuInfo, NvmlUnavailable

log = logging.getLogger(__name__)

PCI_VENDORS = {"0x8086": Vendor.INTEL, "0x1002": Vendor.AMD, "0x10de": Vendor.NVIDIA}


class NvmlReader(Protocol):
    def devices(self) -> tuple[str, list[GpuInfo]]:
        """The driver version and the GPUs; raises NvmlUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class Host:
    """Where discovery looks: replaced in tests to present any machine."""

    nvml: NvmlReader
    sys_drm: Path = Path("/sys/class/drm")
    readable: Callable[[str], bool] = lambda path: os.access(path, os.R_OK | os.W_OK)


def nvidia_devices(nvml: NvmlReader) -> tuple[list[Device], str | None]:
    """NVIDIA GPUs, or none and the reason."""
    try:
        driver, gpus = nvml.devices()
    except NvmlUnavailable as exc:
        return [], str(exc)
    return [
        Device(
            id=f"nvidia:{g.index}",
            vendor=Vendor.NVIDIA,
            name=g.name,
            index=g.index,
            driver=driver,
            encoder_capacity=g.encoder_capacity,
            uuid=g.uuid or None,
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
        if vendor is None or vendor is Vendor.NVIDIA:  # NVIDIA is driven through CUDA, not VAAPI
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
        notes.append(f"no NVIDIA GPU ({why})")
    dri = render_nodes(host)
    if not dri:
        notes.append(f"no Intel or AMD render node under {host.sys_drm}")
    return [CPU, *nvidia, *dri], notes
