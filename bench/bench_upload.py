"""Upload throughput: a worker's output through ``nodes.transfer.upload`` into the real app
(``PATCH /worker/jobs/{id}/output``: chunked, resumable, SHA-256 verified at the end)
against a plain single streamed ``PUT`` into a bare aiohttp handler that writes it to disk
(no checks; once without and once with a SHA-256 of the body as it comes), all on
loopback in one process (client and servers share one event loop, as a fair floor for all),
alternating, after ``os.sync()``.

    python bench/bench_upload.py [--rounds 3] [--mib 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import serve

from optimized_versions.app import create_app
from optimized_versions.config import Config
from optimized_versions.jobs.cache import output_path
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.keys import STORE, UPLOADS, WORKER_TOKENS
from optimized_versions.nodes.transfer import MiB, upload


def plain_app(folder: Path) -> web.Application:
    """The baselines: the body written to disk as it comes, and the same hashing it too
    (the least any verified transfer must do)."""

    async def put(request: web.Request) -> web.Response:
        digest = hashlib.sha256() if request.query.get("hash") else None
        with (folder / "plain.bin").open("wb") as sink:
            async for piece in request.content.iter_any():
                sink.write(piece)
                if digest is not None:
                    digest.update(piece)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_put("/put", put)
    return app


def give_job(app: web.Application, cache: Path) -> str:
    """A job running on worker "bench" (added and handed over with no await between, so
    the local scheduler never sees it waiting)."""
    job_id = str(uuid.uuid4())
    job = Job(
        job_id, "admin", "admin", "d", "i", {"Name": "Big"}, "http://x/", "mkv",
        "h264-1080p", JobStatus.QUEUED, time.time(), str(output_path(cache, job_id)),
    )  # fmt: skip
    app[STORE].add(job, "http://x/")
    app[STORE].transition(job, JobStatus.OPTIMIZING, node="bench")
    return job_id


async def main(rounds: int, mib: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    source = root / "output.mp4"
    with source.open("wb") as sink:
        for _ in range(mib):
            sink.write(os.urandom(MiB))
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    config = Config(cache_dir=root / "cache", data_dir=root / "data", access_log=False)
    app = create_app(config)
    runner, port = await serve(app)
    token = app[WORKER_TOKENS].create("bench")
    plain, plain_port = await serve(plain_app(root))
    base = f"http://127.0.0.1:{port}/"
    size = source.stat().st_size
    kinds = {"plain PUT": 0, "PUT + SHA-256": 0, "upload 8 MiB": 8 * MiB}
    kinds["upload 64 MiB"] = 64 * MiB
    kinds["upload 1 body"] = size
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    async with aiohttp.ClientSession() as session:
        for round_ in range(rounds):
            order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
            for kind in order:
                job_id = give_job(app, root / "cache")
                os.sync()
                started = time.perf_counter()
                if "PUT" in kind:
                    with source.open("rb") as body:
                        url = f"http://127.0.0.1:{plain_port}/put"
                        url += "?hash=1" if "SHA" in kind else ""
                        async with session.put(url, data=body) as resp:
                            assert resp.status == 204
                else:
                    await upload(session, base, token, job_id, source, sha256, chunk=kinds[kind])
                times[kind].append(time.perf_counter() - started)
                job = app[STORE].get(job_id)
                assert job is not None
                if "PUT" not in kind:
                    assert app[UPLOADS].received(job) is not None
                app[UPLOADS].discard(job)
                (root / "plain.bin").unlink(missing_ok=True)
    await runner.cleanup()
    await plain.cleanup()
    baseline = statistics.median(times["plain PUT"])
    print(f"{mib} MiB on loopback, {rounds} rounds, median seconds (MB/s), ratio to plain PUT")
    for kind, values in times.items():
        median = statistics.median(values)
        print(
            f"  {kind:14} {median:6.3f} s ({size / median / 1e6:7.1f} MB/s)"
            f"  ratio {median / baseline:5.2f}  [{', '.join(f'{v:.3f}' for v in values)}]"
        )
    for path in sorted(root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.mib))
