"""The devices a backend can run on, as values: discovery (``hardware.devices``) makes them,
the planner and placement read them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Vendor(StrEnum):
    CPU = "cpu"
    NVIDIA = "nvidia"
    INTEL = "intel"
    AMD = "amd"


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # "cpu", "nvidia:0", "dri:renderD128"
    vendor: Vendor
    name: str
    index: int = 0  # the NVML index of an NVIDIA GPU (CUDA uses it with PCI_BUS_ID order)
    render_node: str | None = None
    driver: str | None = None
    encoder_capacity: int | None = None  # NVML's H.264 encoder capacity, percent
    uuid: str | None = None  # an NVIDIA GPU's UUID, as NVML gives it ("GPU-...")
    problem: str | None = None  # why it cannot be used, in plain words
    va_driver: str | None = None  # the VAAPI driver the probe met: iHD, i965, radeonsi

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def traits(self) -> tuple[str, ...]:
        """What encoder quirks are keyed by (``device_args``): vendor, then VAAPI driver."""
        return (str(self.vendor), *([self.va_driver] if self.va_driver else []))


CPU = Device(id="cpu", vendor=Vendor.CPU, name="CPU")
