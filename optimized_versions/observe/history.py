"""The last 15 minutes of load readings, in memory, for the dashboard's sparklines
(inline SVG: no chart library). A restart starts the history afresh."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

WINDOW = 15 * 60.0  # seconds of history kept


class LoadHistory:
    def __init__(
        self, read: Callable[[], dict[str, Any]], interval: float, clock: Callable[[], float]
    ) -> None:
        self._read = read  # Placer.describe: the same numbers GET /hardware shows
        self.interval = interval
        self._clock = clock
        points = max(2, int(WINDOW / interval) + 1)
        self._series: dict[str, deque[tuple[float, float]]] = {}
        self._points = points

    def sample(self) -> None:
        now = self._clock()
        load = self._read()
        values: dict[str, float | None] = {
            "cpu": load.get("cpuPercent"),
            "memory": load.get("memoryAvailablePercent"),
            "disk": load.get("diskFreeBytes"),
        }
        for device, entry in load.get("devices", {}).items():
            values[f"{device}.used"] = entry.get("used")
            values[f"{device}.encoder"] = entry.get("encoderPercent")
        for name, value in values.items():
            if value is None:
                continue
            series = self._series.setdefault(name, deque(maxlen=self._points))
            series.append((now, float(value)))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def values(self, name: str) -> list[float]:
        return [value for _, value in self._series.get(name, ())]

    def sparkline(self, name: str, top: float | None = None, width: int = 120) -> str:
        """SVG polyline points for a series, scaled to ``top`` (or its own maximum)."""
        values = self.values(name)
        if len(values) < 2:
            return ""
        high = top if top is not None else max(max(values), 1.0)
        step = width / (self._points - 1)
        start = width - step * (len(values) - 1)  # the newest reading at the right edge
        return " ".join(
            f"{start + i * step:.1f},{24 - 22 * min(v / high, 1.0):.1f}"
            for i, v in enumerate(values)
        )
