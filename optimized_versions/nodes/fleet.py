"""The worker hosts this server knows, as their heartbeats describe them, and where a job
goes among them.

A worker's SAQ ``worker_info`` (sent every heartbeat through the queue proxy) carries its
description as metadata: version, devices with slots, the best working backend per codec,
and whether its load gate is open (checked by ``nodes/messages.py`` before it comes here).
A node unheard of for two heartbeats is lost; one that sent a malformed message is
unhealthy, and takes no new job until an admin resumes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..catalog.profiles import HardwarePolicy, Profile

SOFTWARE = "software"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device of a worker host, as its heartbeat tells it."""

    id: str
    vendor: str
    name: str
    slots: int
    used: int

    @property
    def free(self) -> int:
        return max(0, self.slots - self.used)


@dataclass(slots=True)
class Node:
    name: str
    seen: float = 0.0  # when it was last heard from (any call through the proxy)
    version: str = ""
    best: dict[str, str] = field(default_factory=dict)  # codec -> best working backend there
    slots: int = 0  # jobs it runs at once, all devices together
    busy: str | None = None  # its own load gate says no, and why
    devices: list[DeviceInfo] = field(default_factory=list)  # as its probe found them
    running: set[str] = field(default_factory=set)  # our job ids placed on it
    on_cpu: set[str] = field(default_factory=set)  # those sent for its CPU (software)
    draining: bool = False  # an admin asked it to take no new job
    unhealthy: str | None = None  # the first malformed message it sent, until resumed

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    def free_for(self, backend: str) -> int:
        """Free slots of the devices a job for ``backend`` runs on there: the CPU for
        software, its GPUs otherwise (from its heartbeat's devices, counted by us)."""
        cpu = sum(d.slots for d in self.devices if d.vendor == "cpu")
        on_cpu = len(self.running & self.on_cpu)
        if backend == SOFTWARE:
            return cpu - on_cpu
        return self.slots - cpu - (len(self.running) - on_cpu)

    def describe(self, now: float, lost_after: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "online": now - self.seen <= lost_after,
            "lastHeartbeat": self.seen,
            "version": self.version,
            "devices": [dataclasses.asdict(d) for d in self.devices],
            "best": self.best,
            "slots": self.slots,
            "used": len(self.running),
            "jobs": sorted(self.running),
            "busy": self.busy,
            "draining": self.draining,
            "unhealthy": self.unhealthy,
        }


def backend_for(best: dict[str, str], profile: Profile) -> str | None:
    """The backend a host would encode the profile with, or None when it cannot."""
    backend = best.get(profile.video.codec, SOFTWARE)
    if profile.hardware is HardwarePolicy.SOFTWARE:
        return SOFTWARE
    if profile.hardware is HardwarePolicy.REQUIRE_HW and backend == SOFTWARE:
        return None
    return backend


def rank(best: dict[str, str], profile: Profile, preference: list[str]) -> int | None:
    """How good a host is for the profile (lower is better: its backend's place in
    ENCODER_PREFERENCE), or None when the profile cannot run there at all."""
    backend = backend_for(best, profile)
    if backend is None:
        return None
    return preference.index(backend) if backend in preference else len(preference)


class Fleet:
    def __init__(self, preference: list[str], lost_after: float) -> None:
        self.preference = preference
        self.lost_after = lost_after
        self.nodes: dict[str, Node] = {}
        self.drained: set[str] = set()  # names an admin drained (kept across restarts)

    def heard(self, name: str, now: float, info: dict[str, Any] | None = None) -> Node:
        """A call from ``name``; with its worker_info metadata (checked against
        ``messages.INFO``), its description too."""
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(name, draining=name in self.drained)
        node.seen = now
        if info is not None:
            node.version = info.get("version", "")
            node.best = dict(info.get("best", {}))
            node.slots = info["slots"]
            node.busy = info.get("busy") or None
            node.devices = [DeviceInfo(**{"name": "", **d}) for d in info["devices"]]
        return node

    def unhealthy(self, name: str, why: str) -> bool:
        """``name`` sent something malformed: it takes no new job until an admin resumes
        it. True the first time (the one to log)."""
        node = self.nodes[name]
        first = node.unhealthy is None
        node.unhealthy = node.unhealthy or why
        return first

    def drain(self, name: str, draining: bool) -> bool:
        """Drain or resume ``name``; False when no such node is known."""
        node = self.nodes.get(name)
        if node is None and name not in self.drained:
            return False
        if node is not None:
            node.draining = draining
            if not draining:  # an admin looked at it: what it sends is believed again
                node.unhealthy = None
        if draining:
            self.drained.add(name)
        else:
            self.drained.discard(name)
        return True

    def online(self, node: Node, now: float) -> bool:
        return now - node.seen <= self.lost_after

    def lost(self, now: float) -> list[Node]:
        """Nodes that stopped heartbeating while jobs were placed on them."""
        return [n for n in self.nodes.values() if n.running and not self.online(n, now)]

    def choose(self, profile: Profile, local_rank: int | None, now: float) -> Node | None:
        """The node a waiting job should go to, or None to keep it here: a node whose best
        backend for the profile ranks higher than this host's free one, or any node with a
        free slot when this host has none (``local_rank`` None); most free slots first."""
        best: tuple[int, int, Node] | None = None
        for node in self.nodes.values():
            if node.draining or node.unhealthy or node.busy or not self.online(node, now):
                continue
            backend = backend_for(node.best, profile)
            there = rank(node.best, profile, self.preference)
            if backend is None or there is None or (local_rank is not None and there >= local_rank):
                continue
            free = node.free_for(backend)
            if free <= 0:
                continue
            key = (there, -free, node)
            if best is None or key[:2] < best[:2]:
                best = key
        return None if best is None else best[2]

    def why_not(self, profile: Profile, now: float) -> list[str]:
        """Why each node that could never take the job, or not now, did not take it: in
        words that stay the same while the cause lasts (a changed reason is a write)."""
        reasons = []
        for node in sorted(self.nodes.values(), key=lambda n: n.name):
            if not self.online(node, now):
                why = "is lost"
            elif node.draining:
                why = "is draining"
            elif node.unhealthy:
                why = "is unhealthy (it sent a malformed message)"
            elif node.busy:  # (its reason moves with each reading: the page shows it)
                why = "is busy"
            elif node.free <= 0:
                why = "has no free slot"
            elif rank(node.best, profile, self.preference) is None:
                why = f"has no hardware encoder for {profile.name}"
            else:
                continue  # it could take it: this host was as good or better
            reasons.append(f"{node.name} {why}")
        return reasons
