"""Optimized Versions Server: offline-ready MP4 copies of a Jellyfin library."""

from importlib import metadata


def version() -> str:
    """This server's version as installed (``--version``, /metrics, a worker's heartbeat)."""
    try:
        return metadata.version("optimized-versions")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
