"""Loading a folder of YAML definitions (profiles, backends), validated by a JSON schema.

The shipped files live in the package (``optimized_versions/profiles`` and ``backends`` in
an installed wheel, the repository's top-level folders in a checkout); a user folder
(``profiles_dir``) holds ``profiles/`` and ``backends/`` whose files replace or add to the
shipped ones by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent


def shipped_dir(kind: str) -> Path:
    """Where the shipped YAML files of ``kind`` (profiles/backends) are."""
    installed = _PACKAGE / kind
    return installed if installed.is_dir() else _PACKAGE.parent / kind


def load_folder(kind: str, schema: dict[str, Any], user_dir: Path | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    folders = [shipped_dir(kind)] + ([user_dir / kind] if user_dir else [])
    validator = jsonschema.Draft202012Validator(schema)
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: cannot read: {exc}") from None
            error = jsonschema.exceptions.best_match(validator.iter_errors(data))
            if error is not None:
                key = "/".join(str(p) for p in error.path) or "(top level)"
                raise ConfigError(f"{path}: {key}: {error.message}")
            found[data["name"]] = data
    if not found:
        raise ConfigError(f"no {kind} found in {', '.join(str(f) for f in folders)}")
    return found
