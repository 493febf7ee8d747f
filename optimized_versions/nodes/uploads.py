"""A worker's finished output, received by a resumable upload and verified by SHA-256.

The protocol follows the IETF draft "Resumable Uploads for HTTP" (``Upload-Offset``,
``Upload-Complete``, ``Upload-Length``) and RFC 9530 (``Repr-Digest: sha-256=:<base64>:``);
the routes are in ``web/workers/workers.py``, this module owns the files. The state is the files
themselves, so an upload survives a restart of either side:

- ``<output>.upload``: the bytes received so far; its size *is* the offset to resume at.
  What the handler had read when a connection broke is written out, so only the bytes
  aiohttp still held unread (its read-ahead, at most a few hundred KiB) are sent twice.
- ``<output>.received``: the whole file, renamed so only after its SHA-256 matched the
  worker's ``Repr-Digest``; its existence is the proof. The lead's completion takes it
  from ``received(job)`` and moves it onto ``job.output_path``.

Both are kept for optimizing jobs and removed otherwise: at a start (``jobs/reconcile.py``)
and by DELETE /delete-cache (``jobs/retention.py``); their names are ``jobs/cache.py``'s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import shutil
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import BadRequest, InsufficientStorage, ServiceError
from ..jobs import cache
from ..jobs.models import Job
from ..jobs.output import no_follow, sha256_file

WRITE_BLOCK = 1024 * 1024  # bytes gathered before one write (off the event loop)
SPACE_EVERY = 64 * 1024 * 1024  # bytes between free-space checks of a body of unknown length


class Conflict(ServiceError):
    status = 409


class DigestMismatch(ServiceError):
    """The received bytes are not the worker's file: they are removed, it starts again."""

    status = 422


class Busy(Conflict):
    """Another request is writing this job's upload (or has not noticed its client left)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id}: another upload of its output is in progress", {"Retry-After": "1"}
        )


@dataclass(frozen=True, slots=True)
class Received:
    path: Path
    size: int
    sha256: str  # hex, as jobs keep their checksum


def parse_digest(header: str) -> bytes:
    """The SHA-256 in an RFC 9530 ``Repr-Digest`` (other algorithms beside it are ignored)."""
    for member in header.split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        value = value.strip()
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            break
        try:
            digest = base64.b64decode(value[1:-1], validate=True)
        except binascii.Error:
            break
        if len(digest) == hashlib.sha256().digest_size:
            return digest
        break
    raise BadRequest("Repr-Digest must carry the whole file's SHA-256: sha-256=:<base64>:")


def repr_digest(sha256_hex: str) -> str:
    """The ``Repr-Digest`` header for a file whose SHA-256 is ``sha256_hex``."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


class Uploads:
    def __init__(
        self,
        min_free_space: int,
        free_space: Callable[[Path], int] = lambda folder: shutil.disk_usage(folder).free,
    ) -> None:
        self._min_free = min_free_space
        self._free_space = free_space
        self._writing: set[str] = set()  # job ids with a request writing now
        # job id -> SHA-256 of the partial file so far, kept as the bytes are written (in
        # the same thread), so the end costs no second read; lost on a restart: then the
        # whole file is read once at the end
        self._running: dict[str, _Running] = {}
        self._sha256: dict[str, str] = {}  # job id -> its verified output's SHA-256
        self.bytes_written = 0  # since start: what workers really sent (tests, figures)

    @staticmethod
    def partial(job: Job) -> Path:
        return cache.uploading(job.output_path)

    @staticmethod
    def verified(job: Job) -> Path:
        return cache.received(job.output_path)

    def offset(self, job: Job) -> int:
        """Bytes received so far (the whole size once verified)."""
        for path in (self.verified(job), self.partial(job)):
            if (size := _size(path)) is not None:
                return size
        return 0

    def received(self, job: Job) -> Path | None:
        """The verified output, or None while it is not (all) here."""
        path = self.verified(job)
        return path if _size(path) is not None else None

    def discard(self, job: Job) -> None:
        """Forget the upload: a cancelled or failed job, or a worker that starts again."""
        self._running.pop(job.id, None)
        self._sha256.pop(job.id, None)
        for path in (self.partial(job), self.verified(job)):
            path.unlink(missing_ok=True)

    def busy(self, job: Job) -> bool:
        """A request is writing this job's upload now."""
        return job.id in self._writing

    @asynccontextmanager
    async def writing(self, job: Job) -> AsyncIterator[None]:
        """One writer per job: a second request at the same time is 409 (and told to retry)."""
        if job.id in self._writing:
            raise Busy(job.id)
        self._writing.add(job.id)
        try:
            yield
        finally:
            self._writing.discard(job.id)

    def check_space(self, job: Job, coming: int) -> None:
        """507 when ``coming`` more bytes would leave the cache below MIN_FREE_SPACE."""
        folder = Path(job.output_path).parent
        room = self._free_space(folder) - self._min_free
        if coming > room:
            raise InsufficientStorage(
                f"the cache has room for {max(room, 0)} more bytes of output "
                f"(MIN_FREE_SPACE is kept free); this upload needs {coming}"
            )

    async def append(self, job: Job, body: AsyncIterator[bytes]) -> int:
        """Append ``body`` to the partial file; returns the new offset. When the body breaks
        off (the exception is passed on), what arrived is written first: HEAD then says
        where to resume."""
        path = self.partial(job)
        pieces: list[bytes] = []  # written as they came (one thread hop per WRITE_BLOCK)
        pending = unchecked = 0
        with open(path, "ab", opener=no_follow) as sink:
            running = self._running.get(job.id)
            if running is None or running.length != sink.tell():  # a prefix it never saw
                running = _Running() if sink.tell() == 0 else None
            if running is not None:
                self._running[job.id] = running
            try:
                async for piece in body:
                    pieces.append(piece)
                    pending += len(piece)
                    if pending >= WRITE_BLOCK:
                        pending = 0
                        unchecked += await self._write(sink, pieces, running)
                        if unchecked >= SPACE_EVERY:
                            unchecked = 0
                            self.check_space(job, 0)
            finally:
                if pieces:
                    await self._write(sink, pieces, running)
        return path.stat().st_size

    async def _write(self, sink: BinaryIO, pieces: list[bytes], running: _Running | None) -> int:
        data = pieces.copy()
        pieces.clear()  # handed over: never written twice, whatever happens next
        size = sum(map(len, data))
        work = asyncio.ensure_future(asyncio.to_thread(_write_flush, sink, data, running))
        try:
            await _to_the_end(work)
        finally:  # counted when written, even if the request was cancelled meanwhile
            if work.done() and not work.cancelled() and work.exception() is None:
                self.bytes_written += size
        return size

    async def finish(self, job: Job, digest: bytes, length: int | None = None) -> Received:
        """Hash what arrived (in a thread); when it is the worker's file, make it the
        verified output; otherwise remove it (422): the worker starts again from 0."""
        path = self.partial(job)
        size = _size(path) or 0
        running = self._running.pop(job.id, None)
        if running is not None and running.length == size:
            sha256 = running.digest.hexdigest()
        else:
            sha256 = await asyncio.to_thread(sha256_file, path) if size else _EMPTY
        problem = None
        if length is not None and size != length:
            problem = f"{size} bytes arrived but Upload-Length said {length}"
        elif bytes.fromhex(sha256) != digest:
            problem = (
                f"the {size} bytes received have SHA-256 {sha256}, "
                f"not {digest.hex()} as Repr-Digest says"
            )
        if problem is not None:
            path.unlink(missing_ok=True)
            raise DigestMismatch(f"job {job.id}: {problem}; the upload was removed, send it again")
        if not size:
            path.touch()
        os.replace(path, self.verified(job))
        self._sha256[job.id] = sha256
        return Received(self.verified(job), size, sha256)

    async def received_sha256(self, job: Job) -> str | None:
        """The SHA-256 of the verified output (hashed again when this server restarted
        since it arrived), or None while there is none."""
        path = self.received(job)
        if path is None:
            return None
        known = self._sha256.pop(job.id, None)
        return known or await asyncio.to_thread(sha256_file, path)


_EMPTY = hashlib.sha256().hexdigest()


def _size(path: Path) -> int | None:
    """The size of the plain file at ``path``, None when there is none. Anything else there
    (a link a worker with the shared cache left, to a file of the server's own) is removed:
    never read, never written through, never served as an output."""
    try:
        found = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISREG(found.st_mode):
        return found.st_size
    path.unlink()
    return None


async def _to_the_end(work: asyncio.Future[None]) -> None:
    """Wait for a write in a thread even when the request is cancelled meanwhile (aiohttp
    cancels the handler when its client leaves): the thread writes on regardless, and the
    rest of the buffer must go after it, not beside it. The cancellation is passed on."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled = True
    work.result()
    if cancelled:
        raise asyncio.CancelledError


class _Running:
    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.length = 0  # bytes in the digest: it stands for the file while they agree


def _write_flush(sink: BinaryIO, pieces: list[bytes], running: _Running | None) -> None:
    for piece in pieces:
        sink.write(piece)
    sink.flush()  # in the kernel's hands: a crash of this process loses nothing received
    if running is not None:  # only bytes surely written; a failed write leaves it behind
        for piece in pieces:
            running.digest.update(piece)  # (hashlib lets go of the GIL: the loop runs on)
            running.length += len(piece)
