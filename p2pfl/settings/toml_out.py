"""Settings objects (or plain tables) as TOML text; with help comments, the `p2pfl init` template."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from p2pfl.settings.fields import help_of
from p2pfl.settings.node import NODE_FILE, PLAN_FILE, NodeSection, NodeSettings, file_of

NODE_HEADER = """\
# p2pfl node configuration: what is this hospital's own (key, addresses, paths, its table).
# Relative paths are relative to this file's folder. What every member shares is in the plan
# (node.plan), which makes, with the roster, the consortium ID.
"""
PLAN_HEADER = """\
# p2pfl consortium plan: the task, feature schema, model, training, gossip and privacy settings.
# Every member holds this same file (exchanged out of band, like roster.toml); members whose
# plans differ refuse each other at start, naming the keys that differ.
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
            if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
                lines.append(f"{_key(key)} = [")  # a list of tables: one per line
                lines.extend(f"  {value_text(v)}," for v in value)
                lines.append("]")
            else:
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


Keep = Callable[[str, dataclasses.Field], bool]  # (section, field) -> written or not


def as_table(obj: object, keep: Keep | None = None, section: str = "") -> dict[str, object]:
    """A settings dataclass as a table; dataclass fields become sections (left out when `keep`
    leaves none of their keys); paths are left out."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            inner = as_table(value, keep, f.name)
            if inner:
                out[f.name] = _Section(inner)
        elif not isinstance(value, Path) and (keep is None or keep(section, f)):
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


def to_toml(settings: object, comments: bool = False, file: str | None = None) -> str:
    """SimConfig, or one file (NODE_FILE or PLAN_FILE) of NodeSettings, as TOML that the loaders
    read back equal."""
    keep = None if file is None else (lambda section, f: file_of(section, f) == file)
    return dumps(as_table(settings, keep), help_comments(settings) if comments else None)


def dumps_document(raw: Mapping[str, object]) -> str:
    """A parsed TOML document (tomllib's dicts, e.g. an edited node.toml) as TOML again, its
    top-level tables as [sections]."""
    return dumps({k: _Section(v) if isinstance(v, dict) else v for k, v in raw.items()})


def node_template(name: str, plan: str = "plan.toml") -> str:
    """The commented node.toml `p2pfl init` writes: every key at its default, with its help."""
    settings = NodeSettings(node=NodeSection(name=name, plan=plan))
    return NODE_HEADER + "\n" + to_toml(settings, comments=True, file=NODE_FILE)


def plan_template(settings: NodeSettings | None = None) -> str:
    """The commented plan.toml: every plan key (at its default, or of `settings`), with its help."""
    return PLAN_HEADER + "\n" + to_toml(settings or NodeSettings(), comments=True, file=PLAN_FILE)
