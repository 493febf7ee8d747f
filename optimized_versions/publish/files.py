"""The files publishing writes and takes back, and where they are: PATH_MAP both ways.

A copy is written as a dot-file beside its name (Jellyfin's scans ignore those), checked
against the output's SHA-256, then linked to its name, never over a file. A file is deleted
only while it still has the size and SHA-256 the ledger noted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..jellyfin.sources import parse_path_map

CHUNK = 1 << 20


class PublishError(Exception):
    """Why a copy was not published, in words for the pages."""


class Paths:
    """PATH_MAP both ways: Jellyfin's paths onto this host's mounts, and back."""

    def __init__(self, path_map: str | None) -> None:
        self._pairs = [(remote, local.resolve()) for remote, local in parse_path_map(path_map)]

    def here(self, jellyfin_path: str) -> Path | None:
        for remote, local in self._pairs:
            if jellyfin_path.startswith(remote) or jellyfin_path + "/" == remote:
                candidate = Path(os.path.normpath(local / jellyfin_path[len(remote) :]))
                if candidate == local or candidate.is_relative_to(local):
                    return candidate
        return None

    def jellyfin(self, path: Path) -> str | None:
        for remote, local in self._pairs:
            if path == local or path.is_relative_to(local):
                rest = path.relative_to(local).as_posix()
                return remote + rest if rest != "." else remote.rstrip("/")
        return None


def place(source: Path, target: Path, sha256: str) -> None:
    """Copy into ``.<name>.part`` beside ``target``, check the hash, link it to its name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        with (
            open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW), "rb") as src,
            open(os.open(temporary, flags, 0o644), "wb") as dst,
        ):
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if digest.hexdigest() != sha256:
            raise PublishError("the copy's SHA-256 is not the output's")
        try:
            os.link(temporary, target)  # never over a file: FileExistsError if one is there
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: rename, having looked first
            if target.exists():
                raise FileExistsError(17, "File exists", str(target)) from None
            os.rename(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def remove_if_ours(path: Path, size: int, sha256: str | None) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != size:
            return not path.exists()
        digest = hashlib.sha256()
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            return False
        path.unlink()
        return True
    except FileNotFoundError:
        return True
