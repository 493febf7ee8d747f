"""The application state made from the configuration and the layers below ``web/``, under
typed ``web.AppKey`` constants (never string keys).

This module imports nothing from ``web/``: the handlers import it, never the other way round.
What ``web/`` makes for itself (the authenticator, the sign-in limiter, the list cache, the
served OpenAPI document, the page sessions) is keyed in the module that defines it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from .config import Config
from .hardware.ladder import Hardware
from .hardware.load import LoadMonitor
from .jellyfin.client import JellyfinClient
from .jellyfin.library import JellyfinLibrary
from .jellyfin.relay import SourceRelay
from .jobs.lifecycle import Lifecycle
from .jobs.placement import Placer
from .jobs.retention import Janitor
from .jobs.runner import Runner
from .jobs.scheduler import Scheduler
from .jobs.service import JobService
from .jobs.store import JobStore
from .nodes.dispatch import Dispatcher
from .nodes.tokens import WorkerTokens
from .nodes.uploads import Uploads
from .observe.history import LoadHistory
from .observe.telemetry import Telemetry
from .publish.engine import RulesEngine
from .publish.ledger import Ledger


@dataclass(slots=True)
class Runtime:
    """Mutable state of the running server."""

    shutting_down: bool = False


CONFIG = web.AppKey("config", Config)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
RUNTIME = web.AppKey("runtime", Runtime)
STORE = web.AppKey("store", JobStore)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)  # the one writer of a job's status
SERVICE = web.AppKey("service", JobService)
SCHEDULER = web.AppKey("scheduler", Scheduler)
RUNNER = web.AppKey("runner", Runner)
PLACER = web.AppKey("placer", Placer)
MONITOR = web.AppKey("monitor", LoadMonitor)
JANITOR = web.AppKey("janitor", Janitor)
HARDWARE = web.AppKey("hardware", Hardware)
JELLYFIN = web.AppKey("jellyfin", JellyfinClient)
RELAY = web.AppKey("relay", SourceRelay)
PROFILE_NAMES: web.AppKey[frozenset[str]] = web.AppKey("profile_names")
TELEMETRY = web.AppKey("telemetry", Telemetry)
HISTORY = web.AppKey("history", LoadHistory)
WORKER_TOKENS = web.AppKey("worker_tokens", WorkerTokens)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)  # worker hosts, when QUEUE_URL is set
UPLOADS = web.AppKey("uploads", Uploads)  # worker hosts' outputs coming in
LIBRARY = web.AppKey("library", JellyfinLibrary)  # Jellyfin through the API key, when set
LEDGER = web.AppKey("ledger", Ledger)  # what was published, the holds, the page's rules
RULES = web.AppKey("rules", RulesEngine)  # PUBLISH on, with JELLYFIN_API_KEY
