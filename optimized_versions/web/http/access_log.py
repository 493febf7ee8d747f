"""The access log: the path without its query string (clients put tokens there). Streamyfin
polls every 2 s: a successful poll is logged at DEBUG, so INFO shows what changes things.
``ACCESS_LOG=false`` turns the access log off (cli.py)."""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# read-only requests a client or a monitor repeats on a timer
POLLS = re.compile(r"^/(job-status/[^/]+|all-jobs|statistics|health|metrics|hardware)$")


def is_poll(request: web.BaseRequest, response: web.StreamResponse) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and response.status < 400
        and POLLS.match(request.path) is not None
    )


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.DEBUG if is_poll(request, response) else logging.INFO
        self.logger.log(
            level,
            '%s "%s %s" %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )
