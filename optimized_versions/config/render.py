"""The files made from the declaration: ``config.sample.yaml``, ``docs/configuration.md``
and the README's table of the few common settings. ``generated()`` makes them in memory
(the sync test compares them with the committed ones); ``__main__`` writes them."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .declare import Section, Setting
from .loading import FALSE, SETTINGS, TRUE

COMMAND = "python -m optimized_versions.config --write-docs"
SOURCE = "optimized_versions/config/settings.py"
SAMPLE = Path("config.sample.yaml")
DOCS = Path("docs/configuration.md")
README = Path("README.md")
README_START = f"<!-- settings: made by `{COMMAND}` from {SOURCE} -->"
README_END = "<!-- /settings -->"
_WIDTH = 92
_LOOKS_LIKE_A_SETTING = re.compile(r"^#? ?[a-z_]+: ")  # how tests/test_deploy.py reads it
_DOC_LINK = re.compile(r"docs/([a-z-]+)\.md")

# read outside the configuration file, by the command line and the images
ENV_ONLY = (
    (
        "CONFIG_FILE",
        "The YAML file to read when `--config` is not given (else `DATA_DIR/config.yaml` if"
        " present).",
    ),
    (
        "WORKER_TOKEN",
        "`optimized-versions worker`: its worker token, kept out of `ps` (`--token` works"
        " too); see docs/workers.md.",
    ),
    (
        "`PUID`, `PGID`, `UMASK`, `TZ`",
        "The images' entrypoint: the user, group, umask and time zone the server runs with;"
        " see docs/deploying.md.",
    ),
)

_PROSE = f"""\
Settings come from a YAML file (lower-case keys, `max_concurrent_jobs`) and from the
environment (upper-case names, `MAX_CONCURRENT_JOBS`: the original server's), **the
environment winning**.

- **The file** is the one `--config FILE` names, else the one `CONFIG_FILE` names, else
  `DATA_DIR/config.yaml` when it exists (in Docker `./data/config.yaml` on the host:
  standalone `tokens` can live there). `serve`, `probe`, `worker` and `worker-token` all
  read it so. [`config.sample.yaml`](../config.sample.yaml) lists every key with its
  default, commented.
- **Booleans** accept {", ".join(f"`{t}`/`{f}`" for t, f in zip(TRUE, FALSE, strict=False))}
  in any case (in the environment an empty value is false); numbers must be finite. In the
  environment an empty value unsets a text setting that may be unset (`JELLYFIN_URL=`).
- **Every value is validated when the server starts**; a bad one stops the start with a
  message that names the key (the variable, or the file and key) and the value; for a
  secret (`tokens`, `METRICS_TOKEN`, `QUEUE_URL`) its place, never its value.
- Two settings are checked again against the YAML files they name, where those are loaded
  (`app.py`): `DEFAULT_PROFILE` must be a profile and `ENCODER_PREFERENCE` may name only
  backends there are (shipped, or in `PROFILES_DIR`). `DATA_DIR` and `CACHE_DIR` must be
  usable, and `QUEUE_URL` reachable, when the server starts.

Each setting is declared once, in
[`{SOURCE}`](../{SOURCE}) (name, type, default, rules, meaning);
this page, [`config.sample.yaml`](../config.sample.yaml) and the README's short table are
made from it: change it there, then run `{COMMAND}`
(`tests/test_config_docs.py` fails while they differ).
"""


def generated(root: Path) -> dict[Path, str]:
    """Every generated file under ``root`` as it should read now."""
    readme = root / README
    return {
        root / SAMPLE: sample(),
        root / DOCS: configuration_md(),
        readme: with_readme_table(readme.read_text(encoding="utf-8")),
    }


def sample() -> str:
    lines = [
        "# Optimized Versions Server: a sample configuration (every key, with its default).",
        "#",
        "# Where the server looks, without flags: the file named by CONFIG_FILE, else",
        "# DATA_DIR/config.yaml when it exists (in Docker: ./data/config.yaml on the host,",
        "# since /data is a volume). `optimized-versions serve --config FILE` names one.",
        "# Environment variables (upper-case names, e.g. MAX_CONCURRENT_JOBS) win over this.",
        "# Uncomment what you change; docs/configuration.md has the same, as a table.",
        f"# Made by `{COMMAND}`",
        f"# from {SOURCE}: change that, not this.",
    ]
    for section, settings in _sections():
        lines += ["", f"# --- {section.title} ".ljust(_WIDTH, "-"), *_comment(section.intro)]
        for setting in settings:
            lines += ["", *_comment(meaning(setting)), _sample_line(setting)]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    lines = [f"# {line}" for line in textwrap.wrap(text.replace("`", ""), _WIDTH - 2)]
    for line in lines:
        if _LOOKS_LIKE_A_SETTING.match(line):
            raise ValueError(f"a comment in the sample reads like a setting: {line!r}")
    return lines


def _sample_line(setting: Setting) -> str:
    key = setting.key
    value = key.example if key.example is not None else yaml_value(setting.default)
    first, *items = value.split("\n")  # an example list: one commented line per item
    text = f"{setting.name}: {first}" if first else f"{setting.name}:"
    text += "".join(f"\n# {item}" for item in items)
    return text if key.active else f"# {text}"


def configuration_md() -> str:
    lines = [
        f"<!-- Made by `{COMMAND}` from {SOURCE}: change that, not this. -->",
        "",
        "# Configuration",
        "",
        _PROSE.rstrip("\n"),
    ]
    for section, settings in _sections():
        lines += ["", f"## {section.title}", ""]
        if section.intro:
            lines += [_links(section.intro, "docs/"), ""]
        lines += _table(settings, "docs/")
    lines += ["", "## Read outside the file", "", "| Environment | Meaning |", "| --- | --- |"]
    for name, text in ENV_ONLY:
        shown = name if name.startswith("`") else f"`{name}`"
        lines.append(f"| {shown} | {_links(text, 'docs/')} |")
    return "\n".join(lines) + "\n"


def readme_table() -> list[str]:
    common = [s for s in SETTINGS if s.key.common]
    return [README_START, *_table(common, ""), README_END]


def with_readme_table(text: str) -> str:
    """The README with its generated table replaced (it must have the two markers)."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {README_START!r} ... {README_END!r} block")
    return text[:start] + "\n".join(readme_table()) + text[end + len(README_END) :]


def _table(settings: Iterable[Setting], here: str) -> list[str]:
    rows = ["| Environment | YAML key | Default | Meaning |", "| --- | --- | --- | --- |"]
    for setting in settings:
        env = f"`{setting.env_name}`" if setting.key.env else "\u2013"
        text = _links(meaning(setting), here)
        if "|" in text:
            raise ValueError(f"{setting.name}: a '|' would break the table")
        rows.append(f"| {env} | `{setting.name}` | {shown_default(setting)} | {text} |")
    return rows


def _links(text: str, here: str) -> str:
    """``docs/x.md`` in a meaning becomes a link, relative to the page it is on."""
    prefix = "" if here == "docs/" else "docs/"
    return _DOC_LINK.sub(lambda m: f"[{m.group(0)}]({prefix}{m.group(1)}.md)", text)


def _sections() -> list[tuple[Section, list[Setting]]]:
    grouped: dict[Section, list[Setting]] = {}
    for setting in SETTINGS:
        grouped.setdefault(setting.key.section, []).append(setting)
    return list(grouped.items())


def meaning(setting: Setting) -> str:
    """The declared sentence, and what values it takes (from the rules)."""
    allowed = allowed_values(setting)
    return f"{setting.key.doc} {allowed}" if allowed else setting.key.doc


def allowed_values(setting: Setting) -> str:
    rules = setting.key.rules
    if "enum" in rules:
        choices = [f"`{choice}`" for choice in rules["enum"]]
        if all(choice in setting.key.doc for choice in choices):
            return ""
        return f"One of {', '.join(choices[:-1])} or {choices[-1]}."
    if (shortest := rules.get("minLength", 0)) > 1:
        return f"At least {shortest} characters."
    kinds = setting.json_type
    word = {"integer": "A whole number", "number": "A number"}
    kind = next((word[k] for k in word if k == kinds or k in kinds), None)
    if kind is None:
        return ""
    low, high = rules.get("minimum"), rules.get("maximum")
    if (above := rules.get("exclusiveMinimum")) is not None:
        return f"{kind} above {above}" + (f", at most {high}." if high is not None else ".")
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}."
    return f"{kind}, {low} or more." if low is not None else f"{kind}."


def shown_default(setting: Setting) -> str:
    if setting.key.shown is not None:
        return setting.key.shown
    value = setting.default
    if value is None:
        return "unset"
    if isinstance(value, bool | int | float):
        return yaml_value(value)
    return f"`{yaml_value(value) if isinstance(value, Path) else value}`"


def yaml_value(value: Any) -> str:
    """A default as the sample writes it: ``8``, ``true``, ``null``, ``./cache``, ``"off"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Path):
        text = str(value)
        return text if value.is_absolute() or text.startswith(".") else f"./{text}"
    if isinstance(value, tuple):
        return "[]"
    text = str(value)
    return text if text and yaml.safe_load(text) == text else json.dumps(text)
