"""Processes an earlier run left writing into the cache folder (after a crash), ended."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import psutil

from . import cache

log = logging.getLogger(__name__)


def end_stale_writers(cache_dir: Path, grace: float = 3.0) -> list[int]:
    """End processes left by an earlier run (a crash) that still write a partial output
    into the cache folder: their work is lost anyway, and their load would hold new jobs."""
    folder = str(cache_dir.resolve()) + os.sep
    me = os.getpid()
    stale = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if proc.pid != me and any(a.startswith(folder) and a.endswith(cache.PART) for a in args):
            stale.append(proc)
    for proc in stale:
        log.warning("ending pid %d left by an earlier run: it writes into the cache", proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(stale, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return [p.pid for p in stale]
