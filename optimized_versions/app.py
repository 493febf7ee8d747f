"""The application factory: builds the parts from a validated configuration, mounts the
routes, and hands each long-lived resource to its cleanup context (``resources.py``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

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
from .jellyfin.relay import SourceRelay
from .jellyfin.rules import SourceRules
from .jobs import sidecars
from .jobs.placement import placer_from
from .jobs.runner import Runner
from .keys import (
    CLOCK,
    CONFIG,
    HARDWARE,
    HISTORY,
    JELLYFIN,
    MONITOR,
    PLACER,
    PROFILE_NAMES,
    RELAY,
    RUNNER,
    RUNTIME,
    TELEMETRY,
    UPLOADS,
    Runtime,
)
from .media.ffmpeg import resolve_ffmpeg
from .nodes.uploads import Uploads
from .observe.history import LoadHistory
from .observe.telemetry import Telemetry
from .resources import (
    HISTORY_INTERVAL,
    dispatch_ctx,
    hardware_ctx,
    history_ctx,
    janitor_ctx,
    jellyfin_ctx,
    lists_ctx,
    load_ctx,
    publish_ctx,
    refuse_new_work,
    relay_ctx,
    scheduler_ctx,
    store_ctx,
)
from .web.api import api, downloads
from .web.api.api import DOCUMENT, VALIDATOR
from .web.api.listcache import LISTS, ListCache
from .web.dashboard import actions, live, login, node_actions, pages, rules_page
from .web.dashboard.login_token import LOGIN_TOKENS, LoginTokens
from .web.dashboard.session_store import SESSIONS, MemoryStorage
from .web.http.headers import security_headers
from .web.http.middleware import errors_middleware
from .web.http.proxies import forwarded_middleware, parse_networks
from .web.http.ratelimit import LIMITER, FailureLimiter
from .web.jellyfin import webhook
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
    sessions = MemoryStorage(
        config.session_ttl, config.sessions_per_user, path=config.base_path or "/"
    )
    app = web.Application(
        client_max_size=config.max_body_size,
        middlewares=[
            forwarded_middleware(parse_networks(config.trusted_proxies)),
            session_middleware(sessions),
            errors_middleware(),
        ],
    )
    app[SESSIONS] = sessions
    app[LOGIN_TOKENS] = LoginTokens(config.base_path or "/")
    app[live.LIVE_STREAMS] = live.LiveStreams(config.live_streams)
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
        subtitles=lambda job, source: sidecars.from_jellyfin(  # the client, once it exists
            app.get(JELLYFIN), job.owner_id, job.item_id, source
        ),
        downmix=config.downmix,
    )
    app.cleanup_ctx.extend([store_ctx, jellyfin_ctx, relay_ctx, hardware_ctx])
    app.cleanup_ctx.extend([dispatch_ctx, scheduler_ctx, publish_ctx, load_ctx, lists_ctx])
    app[HISTORY] = LoadHistory(app[PLACER].describe, HISTORY_INTERVAL, time.time)
    app.cleanup_ctx.extend([janitor_ctx, history_ctx])
    app.on_shutdown.append(refuse_new_work)
    app.on_response_prepare.append(security_headers)
    app.add_routes(api.routes)
    app.add_routes(downloads.routes)
    health.setup(app)
    app.add_routes(metrics.routes)
    pages_routes = (login.routes, pages.routes, actions.routes, live.routes, node_actions.routes)
    for table in (*pages_routes, rules_page.routes):  # node_actions: drain, worker tokens
        app.add_routes(table)  # the pages (rules_page: /rules, a user's rules)
    app.add_routes(workers.routes)  # /worker/...: worker hosts, behind worker tokens
    app.add_routes(node_admin.routes)  # an admin's drain and resume through the API
    app.add_routes(webhook.routes)  # Jellyfin's webhook plugin: evaluate the rules now
    app.router.add_static("/static", pages.HERE / "static", name="static")
    pages.setup_templates(app)
    return app
