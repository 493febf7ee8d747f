"""The application factory: wires the store, authentication, scheduler and cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from . import api
from .auth import JellyfinAuth, StaticAuth, standalone_tokens
from .backends import load_backends
from .cleanup import Janitor
from .config import Config
from .devices import Host, Pynvml
from .errors import ConfigError
from .ffmpeg import resolve_ffmpeg
from .hardware import Hardware
from .http import AUTHENTICATOR, RUNTIME, Runtime, errors_middleware
from .load import (
    GpuReader,
    HostReader,
    Limits,
    LoadMonitor,
    NvmlGpuReader,
    PsutilReader,
    default_cpu_slots,
)
from .placement import Placement, SlotConfig
from .profiles import Profile, load_profiles
from .scheduler import Scheduler
from .store import JobStore
from .transcode import Transcoder

log = logging.getLogger(__name__)

TRANSCODER = web.AppKey("transcoder", Transcoder)


def build_hardware(config: Config, host: Host | None = None) -> tuple[Hardware, dict[str, Profile]]:
    """The hardware service and the profiles, from the configuration (server and CLI)."""
    profiles = load_profiles(config.profiles_dir)
    backends = load_backends(config.profiles_dir)
    if config.default_profile not in profiles:
        raise ConfigError(
            f"invalid configuration: default_profile = {config.default_profile!r}: "
            f"no such profile (known: {', '.join(sorted(profiles))})"
        )
    if "software" not in backends:
        raise ConfigError("the backend 'software' is missing: it is the last rung of every ladder")
    unknown = [name for name in config.preference if name not in backends]
    if unknown:
        raise ConfigError(
            f"invalid configuration: encoder_preference names unknown backends {unknown} "
            f"(known: {', '.join(sorted(backends))})"
        )
    hardware = Hardware(
        resolve_ffmpeg(config.ffmpeg_path),
        backends,
        host or Host(nvml=Pynvml()),
        config.hardware_cache_path,
        config.preference,
        time.monotonic,
    )
    return hardware, profiles


def create_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    host: Host | None = None,
    readers: tuple[HostReader, GpuReader] | None = None,
) -> web.Application:
    """Build the server from a validated configuration; tests use this same factory
    (with fake device and load readers where the real ones would need a GPU)."""
    hardware, profiles = build_hardware(config, host)
    app = web.Application(client_max_size=config.max_body_size, middlewares=[errors_middleware])
    app[api.CONFIG] = config
    app[api.CLOCK] = clock
    app[api.PROFILE_NAMES] = frozenset(profiles)
    app[RUNTIME] = Runtime()
    app[api.HARDWARE] = hardware
    host_reader, gpu_reader = readers or (PsutilReader(), NvmlGpuReader())
    limits = Limits(
        cpu_high=config.cpu_high,
        memory_low=config.memory_low,
        gpu_high=config.gpu_high,
        hysteresis=config.load_hysteresis,
        min_free_space=config.min_free_space,
    )
    monitor = LoadMonitor(host_reader, gpu_reader, config.cache_dir, limits)
    slots = SlotConfig(
        cpu=config.cpu_slots or default_cpu_slots(),
        gpu=config.gpu_slots,
        nvenc_sessions=config.nvenc_sessions,
        spill_to_cpu=config.spill_to_cpu,
    )
    app[api.PLACEMENT] = Placement(hardware, monitor, slots)
    app[TRANSCODER] = Transcoder(
        hardware.binary,
        profiles,
        hardware,
        stall_timeout=config.stall_timeout,
        stop_grace=config.stop_grace,
    )
    app.cleanup_ctx.extend(
        [_store_ctx, _auth_ctx, _hardware_ctx, _scheduler_ctx, _load_ctx, _janitor_ctx]
    )
    app.on_shutdown.append(_refuse_new_work)
    app.add_routes(api.routes)
    return app


async def _refuse_new_work(app: web.Application) -> None:
    app[RUNTIME].shutting_down = True


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[api.CONFIG]
    for folder in (config.data_dir, config.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
    config.data_dir.chmod(0o700)  # it holds credentials of jobs that may still run
    store = JobStore(config.data_dir / "jobs.sqlite3", app[api.CLOCK])
    app[api.STORE] = store
    yield
    store.close()


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[api.CONFIG]
    if config.jellyfin_url is None:
        tokens = standalone_tokens(config.tokens, config.data_dir)
        app[AUTHENTICATOR] = StaticAuth(tokens)
        yield
        return
    async with aiohttp.ClientSession() as session:
        app[api.HTTP] = session
        app[AUTHENTICATOR] = JellyfinAuth(
            session, config.jellyfin_url, config.auth_cache_ttl, time.monotonic
        )
        yield


async def _hardware_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[api.HARDWARE].load()
    yield
    await app[api.HARDWARE].close()


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    placement = app[api.PLACEMENT]
    placement.monitor.sample(_nvidia_indexes(app))  # gate the first jobs on a real reading
    scheduler = Scheduler(
        app[api.STORE], app[TRANSCODER], app[api.CONFIG], app[api.CLOCK], placement
    )
    placement.monitor.on_change = scheduler.wake
    janitor = Janitor(app[api.STORE], app[api.CONFIG], app[api.CLOCK], scheduler.wake)
    janitor.reconcile()
    app[api.JANITOR] = janitor
    app[api.SCHEDULER] = scheduler
    await scheduler.start()
    yield
    app[RUNTIME].shutting_down = True
    await scheduler.close()


def _nvidia_indexes(app: web.Application) -> list[int]:
    return [d.index for d in app[api.HARDWARE].matrix.devices if d.vendor == "nvidia"]


async def _load_ctx(app: web.Application) -> AsyncIterator[None]:
    """Read the load on an interval; the monitor wakes the scheduler when a verdict flips."""
    placement, interval = app[api.PLACEMENT], app[api.CONFIG].load_interval

    async def sample_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            placement.refreshed()
            placement.monitor.sample(_nvidia_indexes(app))
            app[api.SCHEDULER].wake()  # capacities may have grown without a verdict changing

    task = asyncio.create_task(sample_forever(), name="load")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    placement.monitor.close()


async def _janitor_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[api.JANITOR].run_sweeps(), name="retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
