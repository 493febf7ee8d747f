"""A GPU host for tests: fake NVML and render nodes, and the fake ffmpeg (fake_ffmpeg.py)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, StartApp

from optimized_versions.hardware.devices import Host
from optimized_versions.hardware.nvml import GpuInfo, NvmlUnavailable
from optimized_versions.media.ffmpeg import default_ffmpeg

NO_ENCODER = (
    "[h264_nvenc @ 0x55d0] OpenEncodeSessionEx failed: unsupported device (2): "
    "(no details)\n[h264_nvenc @ 0x55d0] No capable devices found"
)
SESSION_CAP = "[h264_nvenc @ 0x5] OpenEncodeSessionEx failed: out of memory (10): (no details)"
PREFERENCE = ["nvenc", "qsv", "vaapi", "software"]


@dataclass
class FakeNvml:
    gpus: list[GpuInfo] = field(default_factory=list)
    driver: str = "550.54.14"

    def devices(self) -> tuple[str, list[GpuInfo]]:
        if not self.gpus:
            raise NvmlUnavailable("NVML could not start: Driver Not Loaded")
        return self.driver, self.gpus


@dataclass
class FakeHost:
    root: Path
    scenario: Path
    ffmpeg: Path

    def host(
        self,
        nvidia: tuple[str, ...] = (),
        dri: dict[str, str] | None = None,
        unreadable: frozenset[str] = frozenset(),
    ) -> Host:
        drm = self.root / "drm"
        for node, vendor in (dri or {}).items():
            (drm / node / "device").mkdir(parents=True, exist_ok=True)
            (drm / node / "device" / "vendor").write_text(vendor + "\n")
        drm.mkdir(exist_ok=True)
        gpus = [GpuInfo(i, name, 0 if "H100" in name else 100) for i, name in enumerate(nvidia)]
        return Host(nvml=FakeNvml(gpus), sys_drm=drm, readable=lambda path: path not in unreadable)

    def set(self, **scenario: Any) -> None:
        self.scenario.write_text(json.dumps({"log": str(self.root / "argv.log"), **scenario}))

    def ran(self) -> list[list[str]]:
        log = self.root / "argv.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    root = tmp_path / "host"
    root.mkdir()
    wrapper = root / "ffmpeg"
    script = Path(__file__).with_name("fake_ffmpeg.py")
    wrapper.write_text(
        f"#!/bin/sh\nFAKE_FFMPEG_REAL='{default_ffmpeg()}' FAKE_FFMPEG_SCENARIO='{root}/s.json' "
        f"exec '{sys.executable}' '{script}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    host = FakeHost(root, root / "s.json", wrapper)
    host.set()
    return host


async def start_fake(
    env: Env, start_app: StartApp, fake: FakeHost, host: Host, **overrides: Any
) -> Any:
    return await start_app(
        ffmpeg_path=str(fake.ffmpeg), hardware_cache=fake.root / "hw.json", host=host, **overrides
    )
