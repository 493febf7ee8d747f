"""Optimized Versions Server: offline-ready MP4 copies of a Jellyfin library."""

__version__ = "0.1.0"
