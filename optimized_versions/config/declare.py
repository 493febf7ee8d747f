"""How a setting is declared: a field of ``Config`` whose default is ``SECTION.key(...)``.

The field gives the name (the YAML key; the environment's is its upper-case form), the
type and the default; ``key()`` adds the section, the sentence that explains it and the
rules beyond the type (JSON Schema words: ``minimum``, ``pattern``, ``enum``...). The
validation, the sample file and the documentation are all made from that one place.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_JSON_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    Path: "string",
}


@dataclass(frozen=True, slots=True)
class Section:
    """A group of settings: a heading in the docs and the sample."""

    title: str
    intro: str = ""

    def key(
        self,
        default: T,
        doc: str,
        *,
        shown: str | None = None,
        example: str | None = None,
        active: bool = False,
        common: bool = False,
        secret: bool = False,
        env: bool = True,
        tidy: Callable[[Any], Any] | None = None,
        check: Callable[[Any], str | None] | None = None,
        **rules: Any,
    ) -> T:
        """Declare a setting (use as a ``Config`` field's default); see ``Key``."""
        about = Key(self, doc, rules, shown, example, active, common, secret, env, tidy, check)
        return field(default=default, metadata={"key": about})


@dataclass(frozen=True, slots=True)
class Key:
    section: Section
    doc: str  # the sentence: the docs' "Meaning" and the sample's comment
    rules: Mapping[str, Any]  # JSON Schema words beyond the type
    shown: str | None = None  # the docs' "Default" where the bare value would mislead
    example: str | None = None  # the sample's (commented) value instead of the default
    active: bool = False  # the sample sets it, uncommented
    common: bool = False  # one of the few settings the README lists
    secret: bool = False  # an error names its place, never its value
    env: bool = True  # also read from the environment (the upper-case name)
    tidy: Callable[[Any], Any] | None = None  # the spelling a user means, before validation
    check: Callable[[Any], str | None] | None = None  # beyond JSON Schema: what is wrong


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting, resolved: its name, Python type, default and declaration."""

    name: str
    hint: Any
    default: Any
    key: Key

    @property
    def env_name(self) -> str:
        return self.name.upper()

    @property
    def json_type(self) -> str | list[str]:
        return json_type(self.hint)

    @property
    def schema(self) -> dict[str, Any]:
        if "enum" in self.key.rules:  # the enum alone says it (a type word would speak first)
            return dict(self.key.rules)
        return {"type": self.json_type, **self.key.rules}


def declared(cls: type) -> tuple[Setting, ...]:
    """Every setting a dataclass declares with ``Section.key``, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for item in fields(cls):
        key = item.metadata.get("key")
        if not isinstance(key, Key):
            raise TypeError(f"{cls.__name__}.{item.name} is not declared with Section.key()")
        found.append(Setting(item.name, hints[item.name], item.default, key))
    return tuple(found)


def json_type(hint: Any) -> str | list[str]:
    """``int`` -> ``"integer"``, ``Path | None`` -> ``["string", "null"]``, tuples -> array."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) != 1:
            raise TypeError(f"a setting is one type or that type or None, not {hint}")
        inner = json_type(others[0])
        return [inner, "null"] if isinstance(inner, str) else [*inner, "null"]
    if typing.get_origin(hint) is tuple:
        return "array"
    if hint not in _JSON_TYPES:
        raise TypeError(f"no JSON type for {hint}")
    return _JSON_TYPES[hint]


def converts_to_path(hint: Any) -> bool:
    """Whether the value becomes a ``Path`` (a folder or file setting)."""
    return hint is Path or Path in typing.get_args(hint)


def item_type(hint: Any) -> type | None:
    """The element dataclass of a ``tuple[X, ...]`` setting (its YAML is a list of mappings)."""
    if typing.get_origin(hint) is tuple:
        element = typing.get_args(hint)[0]
        return element if isinstance(element, type) else None
    return None
