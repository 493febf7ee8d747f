"""The package's shape: subpackages import one way only, and no module imports in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "optimized_versions"
# each may import from those of a lower rank; config, errors, logs, waits and the package's
# own version() from anywhere. keys.py
# (the app state's keys) sits between the layers it names and web/, the one layer that reads
# them; app, cli and __main__ sit on top and may import anything.
ORDER = [
    "catalog",
    "media",
    "jellyfin",
    "hardware",
    "jobs",
    "nodes",
    "observe",
    "publish",
    "keys",
    "web",
]
BASE = {"config", "errors", "logs", "waits", "version"}
RANKS = {
    "catalog": 0,
    "media": 1,
    "jellyfin": 1,
    "hardware": 2,
    "jobs": 3,
    "nodes": 4,
    "observe": 4,
    "publish": 4,
    "keys": 5,
    "web": 6,
}
# inside web/: the audiences (phones, the pages, worker hosts, monitors) stand on http/, the
# plumbing they share, and never on each other
WEB_RANKS = {"http": 0, "api": 1, "dashboard": 1, "workers": 1, "ops": 1, "jellyfin": 1}


def _targets(path: Path) -> set[tuple[str, ...]]:
    """The modules (as parts below the package) that a module imports from the package."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(module[: len(module) - node.level])
            parts = base + (node.module.split(".") if node.module else [])
            if node.module:
                found.add(tuple(parts))
            else:  # "from .. import x": x is a module (or subpackage) of that package
                found.update((*parts, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "optimized_versions."
        ):
            found.add(tuple((node.module or "").split(".")[1:]))
    return {target for target in found if target}


def _imports(path: Path) -> set[str]:
    """The package-level names (subpackage or top module) a module imports."""
    return {target[0] for target in _targets(path)}


def _web_imports(path: Path) -> set[str]:
    """The web/ subpackages (or web/ modules) a module imports."""
    return {t[1] for t in _targets(path) if t[0] == "web" and len(t) > 1}


def test_subpackages_import_one_way() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        owner = Path(path.relative_to(PACKAGE).parts[0]).stem
        if owner not in RANKS:
            continue  # app, cli and __main__ sit on top and may import anything
        for name in _imports(path) - BASE - {owner}:
            if RANKS.get(name, 99) >= RANKS[owner]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert wrong == []


def test_keys_import_nothing_from_web() -> None:
    """The state's keys name what the lower layers make: web/ reads them, they never read
    web/ (what web/ makes for itself is keyed where it is defined)."""
    assert _imports(PACKAGE / "keys.py") - BASE <= {n for n, r in RANKS.items() if r < 5}


def test_web_is_grouped_by_who_it_serves() -> None:
    web = PACKAGE / "web"
    assert sorted(p.name for p in web.glob("*.py")) == ["__init__.py"], "web/ holds subpackages"
    assert {p.name for p in web.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        WEB_RANKS
    )
    for sub in WEB_RANKS:
        assert (web / sub / "__init__.py").read_text() == "", f"web/{sub}/__init__.py is empty"
        assert not list((web / sub).glob("*/*.py")), f"web/{sub} is one level deep"


def test_web_audiences_stand_on_http_and_not_on_each_other() -> None:
    wrong = []
    for path in (PACKAGE / "web").rglob("*.py"):
        parts = path.relative_to(PACKAGE / "web").parts
        if len(parts) < 2:
            continue
        owner = parts[0]
        for name in _web_imports(path) - {owner}:
            if WEB_RANKS.get(name, 99) >= WEB_RANKS[owner]:
                wrong.append(f"web/{'/'.join(parts)} imports web/{name}")
    assert wrong == []


def test_no_module_in_web_is_over_300_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in (PACKAGE / "web").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert long == {}


def test_media_and_jellyfin_do_not_know_each_other() -> None:
    for owner, other in (("media", "jellyfin"), ("jellyfin", "media")):
        for path in (PACKAGE / owner).glob("*.py"):
            assert other not in _imports(path), f"{path.name} imports {other}"


def test_the_layout_test_sees_the_imports() -> None:
    runner = _imports(PACKAGE / "jobs" / "runner.py")
    assert {"catalog", "hardware", "jellyfin", "media", "errors"} <= runner
    api = PACKAGE / "web" / "api" / "api.py"
    assert {"keys", "web", "jobs", "errors"} <= _imports(api)
    assert "http" in _web_imports(api)  # "from ..http.middleware import ..."
    assert "dashboard" in _web_imports(PACKAGE / "web" / "dashboard" / "live.py")  # from .
    assert "api" in _web_imports(PACKAGE / "app.py")  # "from .web.api import api"
