"""How the HTTP server runs the application: options for the runner, the mount under a
reverse proxy's sub-path (``serve`` and the tests use the same ones), and the version it
reports (/metrics, a worker host's hello)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...config import Config
from ...keys import CONFIG, RUNTIME
from .access_log import access_logger
from .headers import security_headers
from .middleware import errors_middleware


def server_options(config: Config) -> dict[str, Any]:
    """How the HTTP server runs the app (``serve`` and the tests alike): an access log
    without query strings (or none), and connections that send no complete request closed after
    KEEPALIVE_TIMEOUT (slow-header clients cannot hold sockets open)."""
    options: dict[str, Any] = {"keepalive_timeout": config.keepalive_timeout}
    if config.access_log:  # ACCESS_LOG=false: none at all (polls are at DEBUG anyway)
        options["access_log_class"] = access_logger(config.base_path)
    else:
        options["access_log"] = None
    return options


def mount(app: web.Application, base_path: str) -> web.Application:
    """The app under a reverse proxy's sub-path (BASE_PATH), or as it is."""
    if not base_path:
        return app
    # the root reads request bodies too: it gets the same limit and the same JSON errors
    root = web.Application(
        client_max_size=app[CONFIG].max_body_size, middlewares=[errors_middleware()]
    )
    root[RUNTIME] = app[RUNTIME]  # the errors middleware answers 503 while stopping
    root.on_response_prepare.append(security_headers)  # its own 404s (the app's set again)
    root.add_subapp(base_path, app)
    return root
