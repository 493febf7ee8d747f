"""Configuration: every setting declared once (``settings.py``), loaded from a YAML file and
the environment (which wins), validated once; the docs and the sample file are made from
the same declaration (``python -m optimized_versions.config --write-docs``)."""

from .loading import SCHEMA, SECRET_KEYS, SETTINGS, find_config_file, load_config
from .settings import DOWNMIXES, Config, RuleSpec, StaticToken

__all__ = [
    "DOWNMIXES",
    "SCHEMA",
    "SECRET_KEYS",
    "SETTINGS",
    "Config",
    "RuleSpec",
    "StaticToken",
    "find_config_file",
    "load_config",
]
