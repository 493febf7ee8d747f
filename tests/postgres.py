"""A throwaway PostgreSQL for the distributed-mode tests: Debian's server binaries, a fresh
cluster in a temporary folder, reachable only on a Unix socket there (no TCP port).

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
system user (the Debian package creates it). ``.ci/run`` installs the package when missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest


def server_bin() -> Path:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda path: int(path.split("/")[4]))  # the newest major version
    if not found:
        raise RuntimeError("PostgreSQL's server is missing: apt-get install postgresql")
    return Path(found[-1]).parent


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def postgres() -> Iterator[str]:
    """A running cluster for the block; yields its connection URL (socket in the folder)."""
    bin_dir = server_bin()
    folder = Path(tempfile.mkdtemp(prefix="ovs-pg-"))
    data, log = folder / "data", folder / "server.log"
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)

    def run(*argv: str) -> None:
        command = _as_owner([str(bin_dir / argv[0]), *argv[1:]])
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    try:
        run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-k {folder} -c listen_addresses='' -c fsync=off -c max_connections=200"
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        yield f"postgresql://postgres@/postgres?host={folder}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One cluster per test module (initdb and start: about half a second)."""
    with postgres() as url:
        yield url


@pytest.fixture
def queue_url(cluster: str) -> str:
    """A database of its own for each test, on the module's cluster."""
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.replace("/postgres?", f"/{name}?")
