"""The worker hosts this server knows, as their heartbeats describe them, and where a job
goes among them.

A worker's SAQ ``worker_info`` (sent every heartbeat through the queue proxy) carries its
description as metadata: version, devices with slots, the best working backend per codec,
and whether its load gate is open. A node unheard of for two heartbeats is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog.profiles import HardwarePolicy, Profile

SOFTWARE = "software"


@dataclass(slots=True)
class Node:
    name: str
    seen: float = 0.0  # when it was last heard from (any call through the proxy)
    version: str = ""
    best: dict[str, str] = field(default_factory=dict)  # codec -> best working backend there
    slots: int = 0  # jobs it runs at once, all devices together
    busy: str | None = None  # its own load gate says no, and why
    devices: list[dict[str, Any]] = field(default_factory=list)  # as its probe found them
    running: set[str] = field(default_factory=set)  # our job ids placed on it
    on_cpu: set[str] = field(default_factory=set)  # those sent for its CPU (software)
    draining: bool = False  # an admin asked it to take no new job

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    def free_for(self, backend: str) -> int:
        """Free slots of the devices a job for ``backend`` runs on there: the CPU for
        software, its GPUs otherwise (from its heartbeat's devices, counted by us)."""
        cpu = sum(int(d.get("slots", 0)) for d in self.devices if d.get("vendor") == "cpu")
        if not any("vendor" in d for d in self.devices):
            return self.free  # an older worker's heartbeat: all slots together
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
            "devices": self.devices,
            "best": self.best,
            "slots": self.slots,
            "used": len(self.running),
            "jobs": sorted(self.running),
            "busy": self.busy,
            "draining": self.draining,
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
        """A call from ``name``; with its worker_info metadata, its description too."""
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(name, draining=name in self.drained)
        node.seen = now
        if info is not None:
            node.version = str(info.get("version", ""))
            node.best = {str(k): str(v) for k, v in dict(info.get("best", {})).items()}
            node.slots = int(info.get("slots", 0))
            node.busy = info.get("busy") or None
            node.devices = list(info.get("devices", []))
        return node

    def drain(self, name: str, draining: bool) -> bool:
        """Drain or resume ``name``; False when no such node is known."""
        node = self.nodes.get(name)
        if node is None and name not in self.drained:
            return False
        if node is not None:
            node.draining = draining
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
            if node.draining or node.busy or not self.online(node, now):
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
