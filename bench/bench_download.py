"""Download throughput: a 2 GB output through ``GET /download/:id`` (the console script,
aiohttp's sendfile) against nginx serving the same file with sendfile, both on loopback,
both fetched by curl to /dev/null. Each round fetches the whole file and a range (all but
the first MiB: a resumed download, 206) from both, in alternating order; the figure is the
median of the rounds' server/nginx ratios (pairs measured back to back, so a busy moment
weighs on both sides of a pair). Target: server/nginx >= 0.95.

Needs nginx on PATH (Debian: ``apt-get install nginx-light``); the file is sparse (2 GB of
zeros on no disk), read from the page cache by both.

    python bench/bench_download.py [--rounds 9] [--gib 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from served import serve

from optimized_versions.jobs import cache
from optimized_versions.jobs.models import Job, JobStatus
from optimized_versions.jobs.store import JobStore

TARGET = 0.95


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(root: Path, size: int) -> str:
    """A completed job whose output is a sparse file of ``size`` bytes."""
    (root / "cache").mkdir(parents=True)
    (root / "data").mkdir()
    job_id = str(uuid.uuid4())
    output = cache.output_path(root / "cache", job_id)
    with output.open("wb") as handle:
        handle.truncate(size)
    store = JobStore(root / "data" / "jobs.sqlite3", time.time)
    job = Job(
        job_id, "admin", "admin", "d", "i", {"Name": "Big"}, "http://x/", "mkv",
        "h264-1080p", JobStatus.QUEUED, time.time(), str(output),
    )  # fmt: skip
    store.add(job, "http://x/")
    store.transition(job, JobStatus.OPTIMIZING)
    store.transition(job, JobStatus.COMPLETED, size=size, checksum="0" * 64, progress=100.0)
    store.close()
    return job_id


def nginx(root: Path, port: int) -> subprocess.Popen[bytes]:
    conf = root / "nginx.conf"
    conf.write_text(
        f"daemon off; user root root; pid {root}/nginx.pid; error_log {root}/nginx.err;\n"
        "events {}\nhttp { access_log off; sendfile on; tcp_nopush on;\n"
        f" client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;\n"
        f" fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;\n"
        f" server {{ listen 127.0.0.1:{port}; root {root}/cache; }} }}\n"
    )
    return subprocess.Popen([shutil.which("nginx") or "nginx", "-c", str(conf)])


RANGE = "1048576-"  # a resumed download: all but the first MiB


def curl(url: str, token: str | None = None, ranged: bool = False) -> float:
    """Bytes per second, curl to /dev/null."""
    argv = ["curl", "-sf", "-o", "/dev/null", "-w", "%{http_code} %{speed_download}", url]
    if token:
        argv[1:1] = ["-H", f"Authorization: {token}"]
    if ranged:
        argv[1:1] = ["-r", RANGE]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    if out[0] != ("206" if ranged else "200"):
        raise SystemExit(f"{url}: HTTP {out[0]}")
    return float(out[1])


async def main_async(rounds: int, gib: float) -> None:
    with tempfile.TemporaryDirectory(prefix="ovs-download-") as tmp:
        root = Path(tmp)
        job_id = prepare(root, int(gib * 1024**3))
        (root / "tmp").mkdir()
        web_port = _port()
        proxy = nginx(root, web_port)
        server = await serve(root, TIME_TO_KEEP_FILES="24")
        try:
            await asyncio.sleep(0.5)
            urls = {
                "server": (f"{server.base}/download/{job_id}", server.token),
                "nginx": (f"http://127.0.0.1:{web_port}/{job_id}.mp4", None),
            }
            for url, token in urls.values():
                await asyncio.to_thread(curl, url, token)  # warm-up, not counted
            ratios: dict[str, list[float]] = {"whole": [], "range": []}
            for n in range(rounds):
                order = ("server", "nginx") if n % 2 == 0 else ("nginx", "server")
                for what in ratios:
                    speed = {}
                    for kind in order:
                        url, token = urls[kind]
                        speed[kind] = await asyncio.to_thread(curl, url, token, what == "range")
                    ratios[what].append(speed["server"] / speed["nginx"])
                    print(
                        f"round {n + 1} {what}: server {speed['server'] / 1e9:.2f} GB/s, "
                        f"nginx {speed['nginx'] / 1e9:.2f} GB/s, ratio {ratios[what][-1]:.3f}",
                        flush=True,
                    )
        finally:
            await server.stop()
            proxy.terminate()
            proxy.wait()
        for what, values in ratios.items():
            median = statistics.median(values)
            verdict = "met" if median >= TARGET else "MISSED"
            print(
                f"download ({what}): median ratio {median:.3f} of {len(values)} rounds "
                f"(from {min(values):.3f} to {max(values):.3f}; target >= {TARGET}): {verdict}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--gib", type=float, default=2.0)
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is not installed (apt-get install nginx-light)")
    os.environ.pop("JELLYFIN_URL", None)
    asyncio.run(main_async(args.rounds, args.gib))


if __name__ == "__main__":
    main()
