"""Each long-lived resource's cleanup context (one ``yield`` each, in ``create_app``'s
order): the store and the lifecycle, Jellyfin, the source relay, the hardware, worker hosts,
the scheduler and its executors, load readings, the list cache, retention, load history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from .errors import ConfigError
from .jellyfin.client import JellyfinClient
from .jellyfin.library import JellyfinLibrary
from .jobs.lifecycle import Lifecycle
from .jobs.local import LocalRuns
from .jobs.reconcile import reconcile
from .jobs.retention import Janitor
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
    LEDGER,
    LIBRARY,
    LIFECYCLE,
    MONITOR,
    PLACER,
    PROFILE_NAMES,
    RELAY,
    RULES,
    RUNNER,
    RUNTIME,
    SCHEDULER,
    SERVICE,
    STORE,
    TELEMETRY,
    UPLOADS,
    WORKER_TOKENS,
)
from .nodes.dispatch import Dispatcher
from .nodes.drains import Drains
from .nodes.tokens import TOKENS_FILE, WorkerTokens
from .publish.engine import RulesEngine
from .publish.ledger import Ledger
from .publish.publisher import Publisher
from .web.api.listcache import LISTS
from .web.http.auth import AUTHENTICATOR, JellyfinAuth, StaticAuth, standalone_tokens
from .web.ops import metrics

log = logging.getLogger(__name__)


HISTORY_INTERVAL = 10.0  # seconds between the dashboard's sparkline points (90 in 15 min)


async def refuse_new_work(app: web.Application) -> None:
    app[RUNTIME].shutting_down = True


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
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


async def jellyfin_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if config.jellyfin_url is None:
        app[AUTHENTICATOR] = StaticAuth(standalone_tokens(config.tokens, config.data_dir))
        yield
        return
    async with aiohttp.ClientSession() as session:
        client = app[JELLYFIN] = JellyfinClient(
            session, config.jellyfin_url, config.jellyfin_timeout
        )
        app[AUTHENTICATOR] = JellyfinAuth(client, config.auth_cache_ttl, time.monotonic)
        if config.jellyfin_api_key:
            app[LIBRARY] = JellyfinLibrary(
                session, config.jellyfin_url, config.jellyfin_api_key, config.jellyfin_timeout
            )
        yield


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[RELAY].start()
    yield
    await app[RELAY].close()


async def hardware_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[HARDWARE].load()
    yield
    await app[HARDWARE].close()


async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
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


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
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


async def publish_ctx(app: web.Application) -> AsyncIterator[None]:
    """PUBLISH with an API key: the rules run, and their copies go into Jellyfin."""
    config, library = app[CONFIG], app.get(LIBRARY)
    app[LEDGER] = ledger = Ledger(config.data_dir / "publish.sqlite3")
    if config.publish == "off" or library is None:
        yield
        ledger.close()
        return
    publisher = Publisher(config, library, ledger, app[CLOCK])
    engine = app[RULES] = RulesEngine(
        config, library, ledger, publisher, app[STORE], app[LIFECYCLE], app[SERVICE],
        app[RUNNER].profiles, app[CLOCK],
    )  # fmt: skip
    app[STORE].subscribe(engine.changed)
    async with _background(engine.run(), "rules"):
        yield
    ledger.close()


async def load_ctx(app: web.Application) -> AsyncIterator[None]:
    monitor = app[MONITOR]
    async with _background(monitor.run(app[CONFIG].load_interval), "load"):
        yield
    monitor.close()


async def lists_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[LISTS].warm(app[STORE])  # before the first phone's poll: ~15 ms a 1,000 jobs
    yield


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    async with _background(app[HISTORY].run(), "load history"):
        yield


async def janitor_ctx(app: web.Application) -> AsyncIterator[None]:
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
