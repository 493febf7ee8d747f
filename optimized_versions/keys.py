"""Every piece of application state, under a typed ``web.AppKey`` (never a string key)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from aiohttp import web

from .config import Config
from .hardware.ladder import Hardware
from .hardware.load import LoadMonitor
from .jellyfin.client import JellyfinClient
from .jellyfin.relay import SourceRelay
from .jobs.cleanup import Janitor
from .jobs.placement import Placer
from .jobs.runner import Runner
from .jobs.scheduler import Scheduler
from .jobs.service import JobService
from .jobs.store import JobStore
from .nodes.dispatch import Dispatcher
from .nodes.tokens import WorkerTokens
from .nodes.uploads import Uploads
from .web.api.listcache import ListCache
from .web.dashboard.history import LoadHistory
from .web.dashboard.session_store import MemoryStorage
from .web.http.auth import Authenticator
from .web.http.ratelimit import FailureLimiter
from .web.ops.telemetry import Telemetry


@dataclass(slots=True)
class Runtime:
    """Mutable state of the running server."""

    shutting_down: bool = False


CONFIG = web.AppKey("config", Config)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
RUNTIME = web.AppKey("runtime", Runtime)
STORE = web.AppKey("store", JobStore)
SERVICE = web.AppKey("service", JobService)
SCHEDULER = web.AppKey("scheduler", Scheduler)
RUNNER = web.AppKey("runner", Runner)
PLACER = web.AppKey("placer", Placer)
MONITOR = web.AppKey("monitor", LoadMonitor)
JANITOR = web.AppKey("janitor", Janitor)
HARDWARE = web.AppKey("hardware", Hardware)
JELLYFIN = web.AppKey("jellyfin", JellyfinClient)
RELAY = web.AppKey("relay", SourceRelay)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
LIMITER = web.AppKey("limiter", FailureLimiter)
LISTS = web.AppKey("lists", ListCache)  # all-jobs answers until the store changes
PROFILE_NAMES: web.AppKey[frozenset[str]] = web.AppKey("profile_names")
DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("document")  # the served OpenAPI document
VALIDATOR: web.AppKey[jsonschema.protocols.Validator] = web.AppKey("validator")
TELEMETRY = web.AppKey("telemetry", Telemetry)
HISTORY = web.AppKey("history", LoadHistory)
SESSIONS = web.AppKey("sessions", MemoryStorage)
WORKER_TOKENS = web.AppKey("worker_tokens", WorkerTokens)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)  # worker hosts, when QUEUE_URL is set
UPLOADS = web.AppKey("uploads", Uploads)  # worker hosts' outputs coming in
