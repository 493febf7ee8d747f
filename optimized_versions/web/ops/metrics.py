"""GET /metrics: Prometheus text, prefix ``ovs_``. Off unless configured: ``METRICS_TOKEN``
(a bearer token) or ``METRICS=open`` (a trusted network). Counters live in ``Telemetry``;
gauges are read here, at scrape time, from the store, the placer and the load monitor.

GPU series are labelled like the common NVIDIA exporters: ``gpu`` is the NVML index,
``uuid`` the GPU's UUID in lower case without ``GPU-``."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from ... import version
from ...catalog.device import Device, Vendor
from ...errors import NotFound, Unauthorized
from ...hardware.ladder import Hardware
from ...jobs.models import JobStatus
from ...jobs.placement import Placer, nvenc_session_cap
from ...jobs.store import JobStore
from ...keys import CLOCK, CONFIG, DISPATCHER, HARDWARE, PLACER, STORE, TELEMETRY
from ...nodes.dispatch import Dispatcher
from ..http.auth import extract_token

routes = web.RouteTableDef()


def gpu_labels(device: Device) -> list[str]:
    uuid = (device.uuid or "").lower().removeprefix("gpu-")
    return [str(device.index), uuid]


class StateCollector(Collector):
    """The gauges: what is true now, read when Prometheus asks."""

    def __init__(self, store: JobStore, placer: Placer, hardware: Hardware) -> None:
        self._store, self._placer, self._hardware = store, placer, hardware

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("ovs_jobs", "jobs by state", labels=["state"])
        for status in JobStatus:
            jobs.add_metric([str(status)], self._store.count(status))
        yield jobs
        yield from self._devices()
        monitor = self._placer.monitor
        if monitor.disk_free is not None:
            yield GaugeMetricFamily(
                "ovs_cache_free_bytes", "bytes free in the cache folder", value=monitor.disk_free
            )
        info = InfoMetricFamily("ovs_build", "this server's version and its ffmpeg's")
        ffmpeg = self._hardware.matrix.ffmpeg.removeprefix("ffmpeg version ").split(" ")[0]
        info.add_metric([], {"version": version(), "ffmpeg": ffmpeg})
        yield info

    def _devices(self) -> Iterator[Metric]:
        placer, monitor = self._placer, self._placer.monitor
        slots = GaugeMetricFamily(
            "ovs_slots", "job slots per device and state", labels=["device", "state"]
        )
        sessions = GaugeMetricFamily(
            "ovs_nvenc_sessions", "NVENC sessions now", labels=["gpu", "uuid", "owner"]
        )
        limit = GaugeMetricFamily(
            "ovs_nvenc_session_limit", "NVENC sessions per system", labels=["gpu", "uuid"]
        )
        ratio = GaugeMetricFamily(
            "ovs_encoder_utilization_ratio",
            "NVENC utilisation (smoothed, 0-1)",
            labels=["gpu", "uuid"],
        )
        for device in self._hardware.matrix.devices:
            used = placer.used.get(device.id, 0)
            slots.add_metric([device.id, "used"], used)
            slots.add_metric([device.id, "free"], max(0, placer.capacity(device) - used))
            if device.vendor is not Vendor.NVIDIA:
                continue
            labels = gpu_labels(device)
            cap = placer.slots.nvenc_sessions or nvenc_session_cap(device.driver)
            limit.add_metric(labels, cap)
            if (now := monitor.sessions.get(device.index)) is not None:
                sessions.add_metric([*labels, "self"], min(used, now))
                sessions.add_metric([*labels, "other"], max(0, now - used))
            if (load := monitor.encoder.get(device.index)) is not None:
                ratio.add_metric(labels, load / 100.0)
        yield from (slots, sessions, limit, ratio)


class NodeCollector(Collector):
    """With worker hosts (QUEUE_URL): each node as the server sees it now, labelled by
    the node's name (a worker token's name, chosen by an admin)."""

    def __init__(self, dispatcher: Dispatcher, clock: Callable[[], float]) -> None:
        self._dispatcher, self._clock = dispatcher, clock

    def collect(self) -> Iterator[Metric]:
        def family(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"ovs_node_{name}", text, labels=["node"])

        online = family("online", "1 while the worker host heartbeats, 0 once it is lost")
        draining = family("draining", "1 while an admin drains the worker host")
        unhealthy = family("unhealthy", "1 once the worker host sent a malformed message")
        slots = family("slots", "jobs the worker host runs at once (its heartbeat)")
        used = family("slots_used", "slots in use (the worker host's heartbeat)")
        running = family("jobs_running", "jobs this server placed on the worker host")
        age = family("heartbeat_age_seconds", "seconds since the worker host was last heard")
        fleet, now = self._dispatcher.fleet, self._clock()
        for node in fleet.nodes.values():
            label = [node.name]
            online.add_metric(label, int(fleet.online(node, now)))
            draining.add_metric(label, int(node.draining))
            unhealthy.add_metric(label, int(node.unhealthy is not None))
            slots.add_metric(label, node.slots)
            busy = sum(d.used for d in node.devices) if node.devices else len(node.running)
            used.add_metric(label, busy)
            running.add_metric(label, len(node.running))
            age.add_metric(label, max(0.0, now - node.seen))
        yield from (online, draining, unhealthy, slots, used, running, age)


def _allowed(request: web.Request) -> None:
    config = request.app[CONFIG]
    if config.metrics_token is None:
        if config.metrics == "open":
            return
        raise NotFound("metrics are off: set METRICS_TOKEN, or METRICS=open on a trusted network")
    if config.metrics == "open":
        return
    sent = extract_token(request.headers, {}) or ""
    if not hmac.compare_digest(sent.encode(), config.metrics_token.encode()):
        raise Unauthorized("/metrics needs Authorization: Bearer <METRICS_TOKEN>")


def register_state(app: web.Application) -> None:
    """Hang the gauges on the app's registry (once the store exists)."""
    app[TELEMETRY].registry.register(StateCollector(app[STORE], app[PLACER], app[HARDWARE]))


def register_nodes(app: web.Application) -> None:
    """The per-node gauges, once the dispatcher exists (worker hosts only)."""
    app[TELEMETRY].registry.register(NodeCollector(app[DISPATCHER], app[CLOCK]))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    _allowed(request)
    body = generate_latest(request.app[TELEMETRY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
