"""Worker hosts as the scheduler sees them (``nodes.dispatch`` is the one): offered each
waiting job before it is placed here, told when one is sent, asked to stop one."""

from __future__ import annotations

from typing import Protocol

from ..catalog.device import Device
from ..catalog.profiles import Profile
from ..waits import Hold
from .models import Job


class Remote(Protocol):
    """Worker hosts (``nodes.dispatch``): where else a job may run, and how it is sent."""

    def choose(self, profile: Profile, local: Device | None) -> str | None:
        """The worker host a job should go to (``local``: the device free here), or None."""
        ...

    def why_not(self, profile: Profile) -> Hold | None:
        """Why no worker host took a job of ``profile`` (draining, lost, busy...), or None."""
        ...

    def send(self, job: Job, node: str) -> None: ...

    async def cancel(self, job: Job) -> None: ...
