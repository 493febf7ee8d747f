"""Command line: ``optimized-versions serve [--config FILE]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web

from . import __version__
from .app import create_app
from .config import load_config
from .errors import ConfigError
from .http import AccessLogger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optimized-versions", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", type=Path, help="YAML configuration file")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
        logging.basicConfig(
            level=config.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        app = create_app(config)
    except ConfigError as exc:
        print(f"optimized-versions: {exc}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info(
        "serving on %s:%d (cache %s, data %s, jellyfin %s)",
        config.host,
        config.port,
        config.cache_dir.resolve(),
        config.data_dir.resolve(),
        config.jellyfin_url or "none",
    )
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        access_log_class=AccessLogger,
        print=None,
        shutdown_timeout=config.stop_grace + 5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
