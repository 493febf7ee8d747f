"""The files made from the configuration's declaration (the sample, docs/configuration.md,
the README's table) are the ones committed, and the declaration itself is whole."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from optimized_versions.config import SCHEMA, SETTINGS
from optimized_versions.config.render import COMMAND, SAMPLE, generated

ROOT = Path(__file__).resolve().parent.parent


def test_the_generated_files_are_in_sync_with_the_declaration() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in generated(ROOT).items()
        if path.read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"{', '.join(stale)} out of date: run `{COMMAND}` in {ROOT}"


def test_every_setting_is_explained_and_named_once() -> None:
    assert len({s.env_name for s in SETTINGS}) == len(SETTINGS) == len(SCHEMA["properties"])
    for setting in SETTINGS:
        assert setting.key.doc.endswith("."), f"{setting.name}: a sentence, with its full stop"
        assert setting.key.section.title, setting.name


def test_the_command_writes_them_and_checks_them(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "docs").mkdir()
    (tmp_path / SAMPLE).write_text("stale\n")
    run = [sys.executable, "-m", "optimized_versions.config"]
    checked = subprocess.run(
        [*run, "--check", "--root", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 1 and COMMAND in checked.stdout
    assert "config.sample.yaml" in checked.stdout
    subprocess.run([*run, "--write-docs", "--root", str(tmp_path)], check=True)
    for path, text in generated(tmp_path).items():
        assert path.read_text(encoding="utf-8") == text
    again = subprocess.run([*run, "--check", "--root", str(tmp_path)], check=False)
    assert again.returncode == 0
