"""``python -m optimized_versions.config --write-docs``: write the files made from the
declaration (the sample, docs/configuration.md, the README's table); ``--check``: name
those that differ and exit 1. Run it in the repository's root, or give ``--root``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .render import COMMAND, generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optimized_versions.config")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-docs", action="store_true", help="write the generated files")
    action.add_argument("--check", action="store_true", help="exit 1 if one is out of date")
    parser.add_argument("--root", type=Path, default=Path(), help="the repository (default: .)")
    args = parser.parse_args(argv)
    if not (args.root / "pyproject.toml").is_file():
        print(f"{args.root.resolve()} is not the repository's root (no pyproject.toml)")
        return 2
    stale = []
    for path, text in generated(args.root).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if args.write_docs:
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'wrote' if args.write_docs else 'out of date'}: {path}")
    if stale and args.check:
        print(f"run `{COMMAND}`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
