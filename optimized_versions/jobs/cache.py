"""The cache folder's file names: every file a job has there is named here, and only here.

- ``<job id>.mp4``: the output (``job.output_path``); records of one output key
  (``jobs.outputs``) share the file of the job whose run made it.
- ``<output>.part``: ffmpeg writing it; renamed onto the output once verified.
- ``<output>.upload``: a worker host's output on its way in, the bytes so far
  (``nodes/uploads.py``); ``<output>.received`` once its SHA-256 matched.
- ``<output>.received.part``: a worker host that mounts the cache folder writes its
  ``.received`` in place, through its own ``.part``.
- ``<output>.subs/``: the job's sidecar subtitle files, fetched for ffmpeg.

The names on disk never change: a new version finds the files an older one left. Also
here: whether a finished job's output is whole, and the folder's size.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..media.ffmpeg import remove_quietly

log = logging.getLogger(__name__)

OUTPUT, PART, UPLOADING, RECEIVED, SIDECARS = ".mp4", ".part", ".upload", ".received", ".subs"
_FILES = (OUTPUT, PART, UPLOADING, RECEIVED)  # the suffixes of our files (not folders)


def output_name(job_id: str) -> str:
    return job_id + OUTPUT


def output_path(cache_dir: Path, job_id: str) -> Path:
    """A new job's output: absolute, as the store keeps it and stale writers are found."""
    return (cache_dir / output_name(job_id)).resolve()


def _beside(output: str | Path, suffix: str) -> Path:
    return Path(f"{output}{suffix}")


def partial(output: str | Path) -> Path:
    """Where ffmpeg writes ``output`` until it is verified."""
    return _beside(output, PART)


def uploading(output: str | Path) -> Path:
    """A worker host's upload of ``output``, the bytes received so far."""
    return _beside(output, UPLOADING)


def received(output: str | Path) -> Path:
    """A worker host's upload of ``output``, whole and verified."""
    return _beside(output, RECEIVED)


def sidecar_folder(output: str | Path) -> Path:
    """Where a job's sidecar files wait for ffmpeg: beside its output, removed after."""
    return _beside(output, SIDECARS)


def running_names(output: str | Path) -> set[str]:
    """The names a running job of this output may have in the folder, beside the output."""
    whole = received(output)
    paths = (partial(output), uploading(output), whole, partial(whole), sidecar_folder(output))
    return {path.name for path in paths}


def plain(path: Path) -> bool:
    """A plain file, not a link: a worker host that writes the shared cache could leave a
    link to a file of the server's own, which must never be served or read as an output."""
    return path.is_file() and not path.is_symlink()


def is_ours(path: Path) -> bool:
    """Whether ``path`` in the cache folder is a name a job's file or folder has."""
    if path.suffix == SIDECARS:
        return path.is_dir()
    return path.suffix in _FILES and path.is_file()


def remove_strays(cache_dir: Path, keep: set[str], running: Iterable[str | Path]) -> None:
    """Remove every file and folder of ours but those in ``keep`` and those of the
    ``running`` jobs' outputs; what is not ours (a user's notes) stays."""
    keep = keep.union(*(running_names(output) for output in running))
    for path in cache_dir.iterdir():
        if path.name in keep or not is_ours(path):
            continue
        if path.is_dir():
            log.info("removing %s: it belongs to no running job", path.name)
            shutil.rmtree(path, ignore_errors=True)
        else:
            log.info("removing %s: it belongs to no job", path.name)
            remove_quietly(path)


def file_intact(output_path: str, size: int) -> bool:
    """Whether a finished job's output is still here, whole."""
    try:
        return Path(output_path).stat().st_size == size
    except OSError:
        return False


def cache_size(cache_dir: Path) -> int:
    with os.scandir(cache_dir) as entries:
        return sum(e.stat().st_size for e in entries if e.is_file(follow_symlinks=False))


def human_size(size: int) -> str:
    """Bytes in base-1024 units, as the original server shows them ("9.84 MB"): the
    cache's size in GET /statistics."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
