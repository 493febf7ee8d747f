"""Why a waiting job waits, as data: a ``Why`` (its metrics label and its words) with the
figures that fill them in. Words are rendered here and nowhere else; ``/metrics`` counts
holds by ``label``, so rewording a reason moves no metric.

Importable from every layer (the load readings, placement, the queue, worker hosts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Why(Enum):
    # label (a metrics label value: no free text), words (str.format of the figures)
    CPU = ("cpu", "CPU above threshold ({cpu:.0f}% >= {limit:g}%)")
    MEMORY = ("memory", "memory low ({memory:.0f}% available)")
    GPU = ("gpu", "GPU encoder busy ({percent:.0f}% >= {limit:g}%)")
    DISK = (
        "disk",
        "disk floor: {free:.1f} GiB free in the cache folder, {needed:.1f} GiB needed",
    )
    NO_SLOT = ("slot", "no free slot on {device}")
    ALL_SLOTS = ("slot", "all {slots} job slots are in use")
    ON_DEVICE = ("", "{device}: {hold}")  # a device's own hold: its label
    FELL_BACK = ("fallback", "fell back to {device}: {hold}")
    DOWNLOADS_LIMIT = (
        "downloads_limit",
        "device {device} has {limit} output(s) not collected yet (MAX_CACHED_PER_USER)",
    )
    SESSION_CAP = ("session_cap", "{meaning} (in {delay:g} s)")
    NO_DEVICE = ("no_device", "no device can encode {codec} for profile {profile}")
    NO_HARDWARE = ("no_device", "{reason}")  # the probe's words (hardware.ladder)
    LOCAL_OFF = ("workers", "waits for a worker host (this server runs no jobs itself: LOCAL_JOBS)")
    WORKER_HOSTS = ("workers", "worker hosts: {hosts}")
    # a record that waits on another's run of the same output (jobs/outputs.py)
    SAME_COPY = ("same_copy", "the same copy is being made for another request")

    @property
    def label(self) -> str:
        return str(self.value[0])


# which label a reason of several parts counts under: the first found in this order
_ORDER = ["session_cap", "cpu", "memory", "gpu", "disk", "downloads_limit", "fallback", "slot"]


@dataclass(frozen=True, slots=True)
class Hold:
    why: Why
    figures: tuple[tuple[str, Any], ...] = ()
    also: tuple[Hold, ...] = ()  # more reasons, joined with "; " (each device's, hosts')

    @classmethod
    def of(cls, why: Why, **figures: Any) -> Hold:
        return cls(why, tuple(figures.items()))

    def __str__(self) -> str:
        words = self.why.value[1].format(**dict(self.figures))
        return "; ".join([words, *(str(more) for more in self.also)])

    @property
    def label(self) -> str:
        labels = [self._own_label(), *(more.label for more in self.also)]
        return next((name for name in _ORDER if name in labels), labels[0] or "other")

    def _own_label(self) -> str:
        if self.why is Why.ON_DEVICE:
            inner = dict(self.figures)["hold"]
            return inner.label if isinstance(inner, Hold) else "other"
        return self.why.label

    def on(self, device: str) -> Hold:
        """This hold, said of ``device``."""
        return Hold.of(Why.ON_DEVICE, device=device, hold=self)

    def fell_back(self, device: str) -> Hold:
        """A job pinned to the device the ladder fell back to waits for this."""
        return Hold.of(Why.FELL_BACK, device=device, hold=self)

    def plus(self, more: Hold) -> Hold:
        return Hold(self.why, self.figures, (*self.also, more))


def several(holds: Iterable[Hold]) -> Hold:
    """One hold of several reasons (at least one)."""
    first, *rest = holds
    return Hold(first.why, first.figures, (*first.also, *rest))
