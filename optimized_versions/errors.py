"""Typed domain errors; one middleware (``web/http/middleware.py``) maps them to JSON HTTP
errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .waits import Hold


class ServiceError(Exception):
    """Base class: an error that has an HTTP status and a message safe to show."""

    status = 500
    close = False  # the connection cannot be reused after this answer

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class UnreadableBody(BadRequest):
    """The body could not be read (bad Content-Encoding): answer, then close."""

    close = True


class RequestTimeout(ServiceError):
    status = 408
    close = True


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class RangeNotSatisfiable(ServiceError):
    status = 416

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the range is outside the file (0-{size - 1})", {"Content-Range": f"bytes */{size}"}
        )


class TooManyRequests(ServiceError):
    status = 429

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        headers = None if retry_after is None else {"Retry-After": str(max(1, round(retry_after)))}
        super().__init__(message, headers)


class Unavailable(ServiceError):
    status = 503


class InsufficientStorage(ServiceError):
    status = 507


class ConfigError(Exception):
    """A configuration, profile or backend file is invalid; the message names the key."""


class TranscodeError(Exception):
    """A job could not produce a valid output; the message is short and free of secrets."""


class RetryLater(Exception):
    """The job cannot run now but will later (all NVENC sessions busy): requeue it."""

    def __init__(self, reason: str, device: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.device = device  # whose capacity proved smaller than believed


class MustWait(Exception):
    """A running job stepped down to another device that has no free slot: it goes back
    to the queue, pinned to that device, with the rungs it gave up."""

    def __init__(self, device: str, reason: Hold, fallbacks: list[str]) -> None:
        super().__init__(str(reason))
        self.device = device
        self.reason = reason
        self.fallbacks = fallbacks
