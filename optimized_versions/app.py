"""The application factory: builds the parts from a validated configuration and gives
each long-lived resource one cleanup context (store, Jellyfin client, hardware, load,
scheduler, retention)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp_session import session_middleware

from .catalog.backends import load_backends
from .catalog.profiles import Profile, load_profiles
from .config import Config
from .errors import ConfigError
from .hardware.devices import Host
from .hardware.ladder import Hardware
from .hardware.load import (
    GpuReader,
    HostReader,
    PsutilReader,
)
from .hardware.nvml import Nvml
from .jellyfin.client import JellyfinClient
from .jellyfin.relay import SourceRelay
from .jellyfin.rules import SourceRules
from .jobs.lifecycle import Lifecycle
from .jobs.local import LocalRuns
from .jobs.placement import placer_from
from .jobs.reconcile import reconcile
from .jobs.retention import Janitor
from .jobs.runner import Runner
from .jobs.scheduler import Scheduler
from .jobs.service import JobService
from .jobs.store import JobStore
from .keys import (
    CLOCK,
    CONFIG,
    DISPATCHER,
    HARDWARE,
    HISTORY,
    JANITOR,
    JELLYFIN,
    LIFECYCLE,
    MONITOR,
    PLACER,
    PROFILE_NAMES,
    RELAY,
    RUNNER,
    RUNTIME,
    SCHEDULER,
    SERVICE,
    STORE,
    TELEMETRY,
    UPLOADS,
    WORKER_TOKENS,
    Runtime,
)
from .media.ffmpeg import resolve_ffmpeg
from .nodes.dispatch import Dispatcher
from .nodes.drains import Drains
from .nodes.tokens import TOKENS_FILE, WorkerTokens
from .nodes.uploads import Uploads
from .observe.history import LoadHistory
from .observe.telemetry import Telemetry
from .web.api import api, downloads
from .web.api.api import DOCUMENT, VALIDATOR
from .web.api.listcache import LISTS, ListCache
from .web.dashboard import actions, live, login, node_actions, pages
from .web.dashboard.session_store import SESSIONS, MemoryStorage
from .web.http.auth import AUTHENTICATOR, JellyfinAuth, StaticAuth, standalone_tokens
from .web.http.middleware import errors_middleware
from .web.http.proxies import forwarded_middleware, parse_networks
from .web.http.ratelimit import LIMITER, FailureLimiter
from .web.ops import health, metrics
from .web.workers import node_admin, workers

log = logging.getLogger(__name__)


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
        host or Host(nvml=Nvml()),
        config.hardware_cache_path,
        config.preference,
        time.monotonic,
        probe_timeout=config.probe_timeout,
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
    sessions = MemoryStorage(config.session_ttl, path=config.base_path or "/")
    app = web.Application(
        client_max_size=config.max_body_size,
        middlewares=[
            forwarded_middleware(parse_networks(config.trusted_proxies)),
            session_middleware(sessions),
            errors_middleware,
        ],
    )
    app[SESSIONS] = sessions
    app[TELEMETRY] = Telemetry(nodes=config.queue_url is not None)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[PROFILE_NAMES] = frozenset(profiles)
    app[DOCUMENT] = api.served_document(app[PROFILE_NAMES])
    app[VALIDATOR] = api.request_validator(app[DOCUMENT])
    app[RUNTIME] = Runtime()
    app[LISTS] = ListCache()
    app[LIMITER] = FailureLimiter(config.auth_failure_limit, 60.0, time.monotonic)
    app[HARDWARE] = hardware
    app[UPLOADS] = Uploads(config.min_free_space)
    host_reader, gpu_reader = readers or (PsutilReader(), Nvml())
    app[PLACER] = placer_from(config, hardware, (host_reader, gpu_reader))
    app[MONITOR] = app[PLACER].monitor
    app[RELAY] = SourceRelay(SourceRules.build(config.jellyfin_url, config.source_allow))
    app[RUNNER] = Runner(
        hardware.binary,
        profiles,
        hardware,
        app[RELAY],
        stall_timeout=config.stall_timeout,
        stop_grace=config.stop_grace,
        downmix=config.downmix,
    )
    app.cleanup_ctx.extend([_store_ctx, _jellyfin_ctx, _relay_ctx, _hardware_ctx])
    app.cleanup_ctx.extend([_dispatch_ctx, _scheduler_ctx, _load_ctx, _lists_ctx])
    app[HISTORY] = LoadHistory(app[PLACER].describe, HISTORY_INTERVAL, time.time)
    app.cleanup_ctx.extend([_janitor_ctx, _history_ctx])
    app.on_shutdown.append(_refuse_new_work)
    app.add_routes(api.routes)
    app.add_routes(downloads.routes)
    health.setup(app)
    app.add_routes(metrics.routes)
    for table in (login.routes, pages.routes, actions.routes, live.routes, node_actions.routes):
        app.add_routes(table)  # the pages (node_actions: an admin's drain, resume and tokens)
    app.add_routes(workers.routes)  # /worker/...: worker hosts, behind worker tokens
    app.add_routes(node_admin.routes)  # an admin's drain and resume through the API
    app.router.add_static("/static", pages.HERE / "static", name="static")
    pages.setup_templates(app)
    return app


HISTORY_INTERVAL = 10.0  # seconds between the dashboard's sparkline points (90 in 15 min)


async def _refuse_new_work(app: web.Application) -> None:
    app[RUNTIME].shutting_down = True


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    for name, folder in (("DATA_DIR", config.data_dir), ("CACHE_DIR", config.cache_dir)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if folder is config.data_dir:
                folder.chmod(0o700)  # it holds credentials of jobs that may still run
            probe = folder / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"{name} {folder} is not usable: {exc.strerror or exc}") from None
    try:
        store = JobStore(config.data_dir / "jobs.sqlite3", app[CLOCK])
    except sqlite3.Error as exc:
        raise ConfigError(f"the job store in {config.data_dir} cannot be opened: {exc}") from None
    app[STORE] = store
    store.subscribe(app[LISTS].changed)  # lists are kept until one of their jobs changes
    app[LIFECYCLE] = Lifecycle(store, app[CLOCK])
    app[WORKER_TOKENS] = tokens = WorkerTokens(config.data_dir / TOKENS_FILE)
    store.observers.append(app[TELEMETRY])
    metrics.register_state(app)
    yield
    tokens.close()
    store.close()


async def _jellyfin_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if config.jellyfin_url is None:
        app[AUTHENTICATOR] = StaticAuth(standalone_tokens(config.tokens, config.data_dir))
        yield
        return
    async with aiohttp.ClientSession() as session:
        client = app[JELLYFIN] = JellyfinClient(
            session, config.jellyfin_url, config.jellyfin_timeout
        )
        app[RUNNER].jellyfin = client  # external subtitles are fetched through it
        app[AUTHENTICATOR] = JellyfinAuth(client, config.auth_cache_ttl, time.monotonic)
        yield


async def _relay_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[RELAY].start()
    yield
    await app[RELAY].close()


async def _hardware_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[HARDWARE].load()
    yield
    await app[HARDWARE].close()


async def _dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    """QUEUE_URL: worker hosts take jobs through SAQ queues on PostgreSQL."""
    config = app[CONFIG]
    if config.queue_url is None:
        yield
        return
    drains = Drains(config.data_dir / TOKENS_FILE)
    dispatcher = Dispatcher(
        app[STORE],
        app[LIFECYCLE],
        app[HARDWARE],
        app[RUNNER].profiles,
        config.queue_url,
        config.worker_heartbeat,
        app[UPLOADS],
        app[CLOCK],
        drains,
    )
    try:
        await dispatcher.start()
    except Exception as exc:  # psycopg's errors name the host, never the password
        drains.close()
        raise ConfigError(f"QUEUE_URL: the queue database cannot be reached: {exc}") from None
    app[DISPATCHER] = dispatcher
    metrics.register_nodes(app)
    yield
    await dispatcher.close()
    drains.close()


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    monitor, store, config, lifecycle = app[MONITOR], app[STORE], app[CONFIG], app[LIFECYCLE]
    monitor.sample()  # gate the first jobs on a real reading
    local = LocalRuns(store, lifecycle, app[RUNNER], app[PLACER])
    lifecycle.attach(local)
    remote = app.get(DISPATCHER)  # worker hosts: offered each waiting job first
    if remote is not None:
        lifecycle.attach(remote)
    scheduler = Scheduler(
        store, lifecycle, local, app[RUNNER], config, app[CLOCK], app[PLACER], remote
    )
    monitor.on_change = scheduler.wake
    lifecycle.subscribe(scheduler.wake)
    app[SERVICE] = JobService(
        store, config, app[PROFILE_NAMES], app[CLOCK], app.get(JELLYFIN), lifecycle
    )
    app[JANITOR] = Janitor(store, lifecycle, config, app[CLOCK])
    reconcile(store, lifecycle, config)
    app[SCHEDULER] = scheduler
    await scheduler.start()
    yield
    app[RUNTIME].shutting_down = True
    await scheduler.close()


async def _load_ctx(app: web.Application) -> AsyncIterator[None]:
    monitor = app[MONITOR]
    async with _background(monitor.run(app[CONFIG].load_interval), "load"):
        yield
    monitor.close()


async def _lists_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[LISTS].warm(app[STORE])  # before the first phone's poll: ~15 ms a 1,000 jobs
    yield


async def _history_ctx(app: web.Application) -> AsyncIterator[None]:
    async with _background(app[HISTORY].run(), "load history"):
        yield


async def _janitor_ctx(app: web.Application) -> AsyncIterator[None]:
    async with _background(app[JANITOR].run_sweeps(), "retention"):
        yield


@contextlib.asynccontextmanager
async def _background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``work`` as a task for the duration; cancel and await it at the end."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
