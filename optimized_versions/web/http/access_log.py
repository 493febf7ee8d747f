"""The access log: the path without its query string (clients put tokens there). Streamyfin
polls every 2 s: a successful poll is logged at DEBUG, so INFO shows what changes things,
under a reverse proxy's sub-path (BASE_PATH) too. ``ACCESS_LOG=false`` turns the access log
off (``serving.server_options``)."""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# read-only requests a client or a monitor repeats on a timer
POLLS = re.compile(r"^/(job-status/[^/]+|all-jobs|statistics|health|metrics|hardware)$")


def is_poll(request: web.BaseRequest, response: web.StreamResponse, base_path: str = "") -> bool:
    path = request.path
    if base_path:
        if not path.startswith(f"{base_path}/"):
            return False  # outside the app: not one of its polls
        path = path[len(base_path) :]
    return (
        request.method in ("GET", "HEAD")
        and response.status < 400
        and POLLS.match(path) is not None
    )


class AccessLogger(AbstractAccessLogger):
    base_path: ClassVar[str] = ""  # BASE_PATH, where the app is mounted (``access_logger``)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.DEBUG if is_poll(request, response, self.base_path) else logging.INFO
        self.logger.log(
            level,
            '%s "%s %s" %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


def access_logger(base_path: str) -> type[AccessLogger]:
    """The access logger of an app mounted at ``base_path`` (aiohttp makes it from a class)."""
    if not base_path:
        return AccessLogger

    class Mounted(AccessLogger):
        pass

    Mounted.base_path = base_path
    return Mounted
