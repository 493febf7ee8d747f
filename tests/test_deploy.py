"""Deploying as Jellyfin users do: the sample configuration, the config file found without
flags (CONFIG_FILE, DATA_DIR/config.yaml), the access log switch, and the images'
entrypoint (PUID/PGID/UMASK on root-owned bind mounts) run for real as root."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import Env, StartApp
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from optimized_versions import cli
from optimized_versions.config import Config, find_config_file, load_config
from optimized_versions.web.http.access_log import AccessLogger

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config.sample.yaml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
_SETTING = re.compile(r"^#? ?([a-z_]+): (.*?)\s*(#.*)?$")


def _sample_settings() -> dict[str, str]:
    found = {}
    for line in SAMPLE.read_text().splitlines():
        if (match := _SETTING.match(line)) and not line.startswith("#   "):
            found[match.group(1)] = match.group(2)
    return found


def test_sample_config_names_every_key_and_loads() -> None:
    keys = {f.name for f in dataclasses.fields(Config)}
    lists = {"tokens", "rules"}  # their examples are lists on the lines below the key
    assert set(_sample_settings()) | lists == keys | lists
    assert "# tokens:" in SAMPLE.read_text() and "# rules:" in SAMPLE.read_text()
    config = load_config(SAMPLE, environ={})
    assert config == Config(), "the active lines of the sample are the defaults"


def test_every_commented_sample_value_is_valid(tmp_path: Path) -> None:
    settings = {k: yaml.safe_load(v) for k, v in _sample_settings().items()}
    settings["tokens"] = [{"token": "a-long-random-admin-token", "name": "admin", "admin": True}]
    settings["rules"] = [{"user": "alice", "kind": "next-up", "count": 2}]
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(settings))
    config = load_config(path, environ={})
    assert config.ffmpeg_path == "/usr/lib/jellyfin-ffmpeg/ffmpeg"
    assert config.min_free_space == Config().min_free_space


def test_config_file_is_found_without_flags(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert find_config_file({"DATA_DIR": str(data)}) is None
    (data / "config.yaml").write_text("max_concurrent_jobs: 3\n")
    found = find_config_file({"DATA_DIR": str(data)})
    assert found == data / "config.yaml"
    assert load_config(found, environ={}).max_concurrent_jobs == 3
    named = tmp_path / "elsewhere.yaml"
    assert find_config_file({"DATA_DIR": str(data), "CONFIG_FILE": str(named)}) == named


def test_serve_reads_data_dir_config_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.yaml").write_text("max_concurrent_jobs: 0\n")  # invalid: proves it is read
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.delenv("CONFIG_FILE", raising=False)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "max_concurrent_jobs" in err and "config.yaml" in err


def _record(path: str, status: int) -> logging.LogRecord:
    class Request:
        remote = "10.0.0.2"
        method = "GET"

        def __init__(self) -> None:
            self.path = path

    class Response:
        def __init__(self) -> None:
            self.status = status

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.access")
    logger.setLevel(logging.DEBUG)
    logger.handlers = [Keep()]
    logger.propagate = False
    AccessLogger(logger, "").log(Request(), Response(), 0.01)  # type: ignore[arg-type]
    return records[0]


def test_polls_are_logged_at_debug_changes_at_info() -> None:
    assert _record("/job-status/abc", 200).levelno == logging.DEBUG
    assert _record("/all-jobs", 200).levelno == logging.DEBUG
    assert _record("/health", 200).levelno == logging.DEBUG
    assert _record("/job-status/abc", 404).levelno == logging.INFO
    assert _record("/optimize-version", 201).levelno == logging.INFO
    assert "/download/abc" in _record("/download/abc", 200).getMessage()


def test_access_log_false_is_a_setting() -> None:
    assert load_config(None, environ={"ACCESS_LOG": "false"}).access_log is False
    assert load_config(None, environ={}).access_log is True


# -- the images' entrypoint, run for real ----------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="the entrypoint drops root: only a root test run can check it",
)


@pytest.fixture
def mounts() -> Iterator[Path]:
    """Folders as Docker creates bind mounts: owned by root, in a place others can reach."""
    base = Path(tempfile.mkdtemp(prefix="ovs-mounts-", dir="/tmp"))
    base.chmod(0o755)
    for name in ("cache", "data"):
        (base / name).mkdir()
        (base / name).chmod(0o755)
    (base / "data" / "jobs.sqlite3").write_bytes(b"")  # left by an earlier run as root
    os.chown(base / "data" / "jobs.sqlite3", 0, 0)
    (base / "data" / "jobs.sqlite3").unlink()
    yield base
    shutil.rmtree(base)


def _entrypoint(mounts: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ["PATH"],
        "CACHE_DIR": str(mounts / "cache"),
        "DATA_DIR": str(mounts / "data"),
        **env,
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_root
def test_entrypoint_gives_root_owned_mounts_to_puid(mounts: Path) -> None:
    (mounts / "cache" / "old.mp4").write_bytes(b"x")  # a file an earlier root run left
    script = 'id -u; id -g; id -G; umask; touch "$CACHE_DIR/new"; echo "$HOME"'
    done = _entrypoint(mounts, "sh", "-c", script, PUID="4242", PGID="4343", UMASK="027")
    assert done.returncode == 0, done.stderr
    uid, gid, groups, umask, home = done.stdout.split("\n")[:5]
    assert (uid, gid, umask) == ("4242", "4343", "0027")
    assert "0" not in groups.split(), "root's group is dropped"
    assert home == str(mounts / "data")
    for path in ("cache", "data", "cache/old.mp4", "cache/new"):
        st = (mounts / path).stat()
        assert (st.st_uid, st.st_gid) == (4242, 4343), path
    assert (mounts / "cache" / "new").stat().st_mode & 0o777 == 0o640


@needs_root
def test_a_link_in_a_mount_gives_nothing_outside_it_away(mounts: Path) -> None:
    """Anyone who can write the volume (the server's own user included) could leave a link
    to a root file there; chown followed it at the next start (then root in the
    container). The link itself is given to PUID, never what it points at."""
    secret = mounts / "shadow"  # stands for /etc/shadow: root's, outside the mounts
    secret.write_text("root:x:0:0")
    secret.chmod(0o600)
    (mounts / "data" / "x").symlink_to(secret)
    (mounts / "cache" / "etc").symlink_to(mounts)  # a link to a folder: not walked either
    done = _entrypoint(mounts, "true", PUID="4242", PGID="4343")
    assert done.returncode == 0, done.stderr
    for path in (secret, mounts):
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0), path
    link = (mounts / "data" / "x").lstat()
    assert (link.st_uid, link.st_gid) == (4242, 4343)


@needs_root
def test_entrypoint_refuses_a_bad_puid(mounts: Path) -> None:
    done = _entrypoint(mounts, "true", PUID="abc")
    assert done.returncode == 2
    assert "PUID and PGID must be numbers" in done.stderr


def _healthcheck(dockerfile: str) -> list[str]:
    """The image's HEALTHCHECK command (exec form)."""
    text = (ROOT / dockerfile).read_text()
    match = re.search(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$", text, re.M)
    assert match is not None, f"{dockerfile} has no HEALTHCHECK CMD"
    command: list[str] = json.loads(match.group(1))
    assert command[0] == "python"
    return command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _applies(req: Requirement, extras: set[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras})


def _runtime_dependencies() -> list[metadata.Distribution]:
    """The installed distributions the server imports: its requirements (not the test
    extra's), theirs and so on, with the extras asked for (psycopg[binary,pool])."""
    extras: dict[str, set[str]] = {}
    found = []
    todo = [Requirement(line) for line in metadata.requires("optimized-versions") or []]
    todo = [req for req in todo if _applies(req, set())]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        new, asked = name not in extras, set(req.extras) - extras.get(name, set())
        if not (new or asked):
            continue
        extras.setdefault(name, set()).update(asked)
        dist = metadata.distribution(req.name)
        found += [dist] if new else []
        needs = [Requirement(line) for line in dist.requires or []]
        todo += [sub for sub in needs if _applies(sub, extras[name])]
    return found


def _readable_copy(source: Path, target: Path) -> None:
    """``source`` at ``target``, readable by anyone: a hard link when the file already is
    and the file system allows, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = source.stat().st_mode
    if mode & 0o004:
        with contextlib.suppress(OSError):
            os.link(source, target)
            return
    shutil.copyfile(source, target)
    target.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))


@pytest.fixture
def server_python() -> Iterator[str]:
    """A Python the dropped user can run the server with, wherever the checkout lives: under
    a folder only its owner may enter (a clone in a 0700 home), PUID can read neither the
    checkout nor the venv in it. So: a venv (of the base interpreter) in a folder anyone
    may read, holding this checkout's package as a wheel installs it and the runtime
    dependencies from the test's own environment."""
    umask = os.umask(0o022)  # the folders made here: 0755
    folder = Path(tempfile.mkdtemp(prefix="ovs-runtime-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        venv = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = venv / "lib" / version / "site-packages"
        for dist in _runtime_dependencies():
            for file in dist.files or []:
                if ".." not in file.parts:  # its scripts in bin/: not needed
                    _readable_copy(Path(str(dist.locate_file(file))), site / file)
        package = site / "optimized_versions"
        for source, target in [
            (ROOT / "optimized_versions", package),
            (ROOT / "backends", package / "backends"),  # where a wheel puts them
            (ROOT / "profiles", package / "profiles"),
        ]:
            for path in source.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    _readable_copy(path, target / path.relative_to(source))
        yield str(venv / "bin" / "python")
    finally:
        shutil.rmtree(folder)
        os.umask(umask)


@needs_root
def test_server_starts_as_puid_on_root_owned_mounts(
    mounts: Path, hardware_cache: Path, server_python: str
) -> None:
    """The real server through the entrypoint: before, the chmod of DATA_DIR failed."""
    port = _free_port()
    if hardware_cache.exists():  # the session's probe answer, left as root (no second probe)
        shutil.copy(hardware_cache, mounts / "data" / "hardware.json")
    env = {
        "PUID": "4242",
        "PGID": "4242",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "ACCESS_LOG": "false",
        "BASE_PATH": "ovs/",  # as a user may write it: served under /ovs
    }
    environ = {"PATH": os.environ["PATH"], "CACHE_DIR": str(mounts / "cache")}
    environ |= {"DATA_DIR": str(mounts / "data"), **env}
    server = subprocess.Popen(
        ["sh", str(ENTRYPOINT), server_python, "-m", "optimized_versions", "serve"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ovs/health", timeout=5) as r:
                    answer = r.status
                    break
            except OSError:
                time.sleep(0.2)
        assert answer == 200, "the server did not answer /health (its log: captured stderr)"
        assert (mounts / "data" / "jobs.sqlite3").stat().st_uid == 4242
        assert (mounts / "data").stat().st_mode & 0o777 == 0o700
        for dockerfile in ("Dockerfile.nvidia", "Dockerfile.vaapi"):  # their HEALTHCHECK, as is
            check = subprocess.run(
                [sys.executable, *_healthcheck(dockerfile)[1:]],
                env=environ,
                timeout=30,
                check=False,
            )
            assert check.returncode == 0, dockerfile
            wrong = subprocess.run(
                [sys.executable, *_healthcheck(dockerfile)[1:]],
                env={**environ, "BASE_PATH": ""},
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert wrong.returncode != 0, "the check must fail where nothing answers"
    finally:
        server.terminate()
        sys.stderr.write(server.communicate(timeout=30)[1])  # shown when the test fails


async def test_an_unwritable_probe_cache_does_not_stop_the_start(
    env: Env, start_app: StartApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A HARDWARE_CACHE that cannot be written (a read-only mount): the server starts and
    says so; the next start probes again."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    client = await start_app(hardware_cache=blocker / "hardware.json")
    assert (await client.get("/health")).status == 200
    assert any("the probe's answer is not kept in" in r.getMessage() for r in caplog.records)
