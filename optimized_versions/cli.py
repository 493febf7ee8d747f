"""Command line: ``optimized-versions serve [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from aiohttp import web

from . import logs, version
from .app import build_hardware, create_app
from .config import find_config_file, load_config
from .errors import ConfigError
from .nodes.tokens import TOKENS_FILE, TokenError, WorkerTokens
from .nodes.worker import WorkerError, WorkerHost
from .web.http.serving import mount, server_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optimized-versions", description=__doc__)
    parser.add_argument("--version", action="version", version=version())
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", type=Path, help="YAML configuration file")
    probe = commands.add_parser("probe", help="find and test the encoders this host has")
    probe.add_argument("--config", type=Path, help="YAML configuration file")
    probe.add_argument("--json", action="store_true", help="print the matrix as JSON")
    probe.add_argument(
        "--cached",
        action="store_true",
        help="answer from the cache when nothing changed (default: probe anew)",
    )
    tokens = commands.add_parser("worker-token", help="make, revoke or list worker tokens")
    tokens.add_argument("--config", type=Path, help="YAML configuration file")
    tokens.add_argument("action", choices=["create", "revoke", "list"])
    tokens.add_argument("name", nargs="?", help="the worker host's name (create, revoke)")
    worker = commands.add_parser("worker", help="take jobs from a server (a worker host)")
    worker.add_argument("--config", type=Path, help="YAML configuration file")
    worker.add_argument("--server", required=True, help="the server's URL (http://nas:3000/)")
    worker.add_argument(
        "--token",
        default=os.environ.get("WORKER_TOKEN"),
        help="the worker token (default: $WORKER_TOKEN, which keeps it out of `ps`)",
    )
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker(args.config, args.server, args.token)
    if args.command == "probe":
        return run_probe(args.config, as_json=args.json, cached=args.cached)
    if args.command == "worker-token":
        return run_worker_token(args.config, args.action, args.name)

    config_file = args.config or find_config_file()
    try:
        config = load_config(config_file)
        logs.configure(config.log_level)
        app = create_app(config)
    except ConfigError as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info(
        "serving on %s:%d%s/ (cache %s, data %s, jellyfin %s)",
        config.host,
        config.port,
        config.base_path,
        config.cache_dir.resolve(),
        config.data_dir.resolve(),
        config.jellyfin_url or "none",
    )
    if config_file is not None:
        logging.getLogger(__name__).info("configuration file: %s", config_file)
    try:
        web.run_app(
            mount(app, config.base_path),  # BASE_PATH: everything under a reverse proxy's path
            host=config.host,
            port=config.port,
            print=None,
            **server_options(config),
            shutdown_timeout=config.stop_grace + 5,
        )
    except ConfigError as exc:  # found at start: an unusable data or cache folder, say
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 2
    return 0


def run_probe(config_path: Path | None, *, as_json: bool, cached: bool) -> int:
    """Probe the host and print the capability matrix (also cached for the server)."""
    try:
        config = load_config(config_path or find_config_file())
        logs.configure("WARNING", "%(levelname)s %(name)s: %(message)s")
        hardware, _ = build_hardware(config)
    except ConfigError as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 2
    matrix = asyncio.run(hardware.load(refresh=not cached))
    if as_json:
        print(json.dumps(hardware.describe(), indent=2))
    else:
        print(matrix.table())
        print()
        print("\n".join(hardware.summary()))
    return 0


def run_worker(config_path: Path | None, server: str, token: str | None) -> int:
    """Probe this host, then take jobs from ``server`` until stopped (SIGINT/SIGTERM)."""
    if not token:
        print(
            "optimized-versions: a worker token is needed: --token or WORKER_TOKEN", file=sys.stderr
        )
        return 2
    try:
        config = load_config(config_path or find_config_file())
        logs.configure(config.log_level)
        hardware, profiles = build_hardware(config)
    except (ConfigError, OSError) as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 2
    host = WorkerHost(config, hardware, profiles, server, token)
    try:
        asyncio.run(host.run())
    except WorkerError as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def run_worker_token(config_path: Path | None, action: str, name: str | None) -> int:
    """``worker-token create NAME`` prints the token once; ``revoke NAME``; ``list``."""
    try:
        config = load_config(config_path or find_config_file())
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = WorkerTokens(config.data_dir / TOKENS_FILE)
    except (ConfigError, OSError) as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 2
    try:
        if action == "list":
            for t in store.all():
                state = "active" if t.active else "revoked"
                print(f"{t.name}\t{state}\tlast used {_when(t.last_used_at)}")
        elif name is None:
            print(f"optimized-versions: worker-token {action} needs a NAME", file=sys.stderr)
            return 2
        elif action == "create":
            print(store.create(name))
        else:
            store.revoke(name)
            print(f"worker {name}: token revoked")
    except TokenError as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _when(moment: float | None) -> str:
    return "never" if moment is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


if __name__ == "__main__":
    sys.exit(main())
