"""The package's shape: subpackages import one way only, and no module imports in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "optimized_versions"
# each may import from those before it; config, errors and logs from anywhere; keys from web
ORDER = ["catalog", "media", "jellyfin", "hardware", "jobs", "nodes", "web"]
BASE = {"config", "errors", "logs"}
RANKS = {"catalog": 0, "media": 1, "jellyfin": 1, "hardware": 2, "jobs": 3, "nodes": 4, "web": 5}


def _imports(path: Path) -> set[str]:
    """The package-level names (subpackage or top module) a module imports."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(module[: len(module) - node.level])
            parts = base + (node.module.split(".") if node.module else [])
            if parts:
                found.add(parts[0])
            else:  # "from .. import x": x is the package-level name
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "optimized_versions."
        ):
            found.add((node.module or "").split(".")[1])
    return found


def test_subpackages_import_one_way() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        owner = path.relative_to(PACKAGE).parts[0]
        if owner not in RANKS:
            continue  # app, cli, keys and __main__ sit on top and may import anything
        for name in _imports(path) - BASE - {owner}:
            allowed = name == "keys" and owner == "web"
            if not allowed and RANKS.get(name, 99) >= RANKS[owner]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert wrong == []


def test_media_and_jellyfin_do_not_know_each_other() -> None:
    for owner, other in (("media", "jellyfin"), ("jellyfin", "media")):
        for path in (PACKAGE / owner).glob("*.py"):
            assert other not in _imports(path), f"{path.name} imports {other}"


def test_the_layout_test_sees_the_imports() -> None:
    runner = _imports(PACKAGE / "jobs" / "runner.py")
    assert {"catalog", "hardware", "jellyfin", "media", "errors"} <= runner
    assert "keys" in _imports(PACKAGE / "web" / "api" / "api.py")
