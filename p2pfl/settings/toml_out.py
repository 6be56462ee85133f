"""Settings objects (or plain tables) as TOML text; with help comments, the `p2pfl init` template."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

from p2pfl.settings.fields import help_of
from p2pfl.settings.node import NodeSection, NodeSettings

TEMPLATE_HEADER = """\
# p2pfl node configuration. Relative paths are relative to this file's folder.
# Every hospital of a consortium uses the same [data], [model], [training], [gossip] and [privacy]
# settings, except its own paths, listen address, threads and timeouts.
"""
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def value_text(value: object) -> str:
    """One TOML value: string, boolean, integer, float, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                          ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {value_text(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def dumps(table: Mapping[str, object], comments: Mapping[str, str] | None = None) -> str:
    """A table as TOML: its plain keys first, then one [section] per sub-table. `comments` maps
    "key" or "section.key" to a comment written above it. None values are left out."""
    comments = comments or {}
    lines: list[str] = []

    def put(prefix: str, items: Mapping[str, object]) -> None:
        for key, value in items.items():
            if value is None or isinstance(value, _Section):
                continue
            note = comments.get(prefix + key)
            if note:
                lines.extend(textwrap.wrap(note, 96, initial_indent="# ", subsequent_indent="# "))
            lines.append(f"{_key(key)} = {value_text(value)}")

    put("", table)
    for name, value in table.items():
        if isinstance(value, _Section):
            if lines:
                lines.append("")
            lines.append(f"[{_key(name)}]")
            put(f"{name}.", value)
    return "\n".join(lines) + "\n"


class _Section(dict):
    """A sub-table that `dumps` writes as a [section] (other dicts are inline tables)."""


def as_table(obj: object) -> dict[str, object]:
    """A settings dataclass as a table; dataclass fields become sections; paths are left out."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _Section(as_table(value))
        elif not isinstance(value, Path):
            out[f.name] = value
    return out


def help_comments(obj: object, prefix: str = "") -> dict[str, str]:
    """"section.key" -> the field's help text, for every field of a settings dataclass."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(help_comments(value, f"{prefix}{f.name}."))
        elif help_of(f):
            out[prefix + f.name] = help_of(f)
    return out


def to_toml(settings: object, comments: bool = False) -> str:
    """NodeSettings or SimConfig as TOML that the loaders read back equal."""
    return dumps(as_table(settings), help_comments(settings) if comments else None)


def dumps_document(raw: Mapping[str, object]) -> str:
    """A parsed TOML document (tomllib's dicts, e.g. an edited node.toml) as TOML again, its
    top-level tables as [sections]."""
    return dumps({k: _Section(v) if isinstance(v, dict) else v for k, v in raw.items()})


def node_template(name: str) -> str:
    """The commented node.toml `p2pfl init` writes: every key at its default, with its help."""
    settings = NodeSettings(node=NodeSection(name=name))
    return TEMPLATE_HEADER + "\n" + to_toml(settings, comments=True)
