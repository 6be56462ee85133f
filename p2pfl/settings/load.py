"""Typed settings from TOML files and command-line flags; errors name file, key and reason."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import source_of
from p2pfl.settings.fields import check_of
from p2pfl.settings.node import NodeSettings, sections
from p2pfl.settings.sim import SimConfig, check_sim_table
from p2pfl.tomlio import describe, matches, read_toml


def sim_config(path: Path | None, flags: dict[str, object]) -> SimConfig:
    """SimConfig from defaults, then the TOML file, then the flags that were given."""
    values: dict[str, object] = {}
    if path is not None:
        values.update(check_sim_table(read_toml(path), str(path)))
    values.update({k: v for k, v in flags.items() if v is not None})
    return SimConfig(**values)


def node_settings(path: Path) -> NodeSettings:
    """Read and check node.toml: every unknown section or key, every wrong type and every bad
    value is an error naming the file and the key."""
    raw = read_toml(path)
    settings = NodeSettings(base_dir=path.resolve().parent)
    for section, table in raw.items():
        target = getattr(settings, section, None)
        if section == "base_dir" or not dataclasses.is_dataclass(target):
            raise UserError(f"{path}: unknown section [{section}] (known: {', '.join(sections())})")
        if not isinstance(table, dict):
            raise UserError(f"{path}: [{section}] must be a table")
        fields = {f.name for f in dataclasses.fields(target)}
        hints = typing.get_type_hints(type(target))
        for key, value in table.items():
            if key not in fields:
                raise UserError(f"{path}: unknown key {section}.{key} (known: {', '.join(sorted(fields))})")
            hint = hints[key]
            if not matches(value, hint):
                raise UserError(f"{path}: {section}.{key} must be {describe(hint)}, got {value!r}")
            setattr(target, key, float(value) if hint is float else value)
    _check_fields(settings, path)
    _check_node(settings, path)
    return settings


def _check_fields(s: NodeSettings, path: Path) -> None:
    """The check each field's metadata declares (p2pfl.settings.fields)."""
    for section in sections():
        target = getattr(s, section)
        for f in dataclasses.fields(target):
            check = check_of(f)
            why = check(getattr(target, f.name)) if check else None
            if why:
                raise UserError(f"{path}: {section}.{f.name} {why}")


def _check_node(s: NodeSettings, path: Path) -> None:
    """Checks that involve more than one key."""
    def bad(key: str, why: str) -> UserError:
        return UserError(f"{path}: {key} {why}")

    if not s.node.name:
        raise bad("node.name", "is required (this hospital's name in the roster)")
    p = s.privacy
    if p.noise < 0 or not p.clip > 0 or not 0 < p.delta < 1 or p.max_epsilon < 0:
        raise bad("[privacy]", "needs noise >= 0, clip > 0, 0 < delta < 1 and max_epsilon >= 0")
    if p.max_epsilon > 0 and p.noise == 0:
        raise bad("privacy.max_epsilon", "is set but privacy.noise is 0: an epsilon target with no "
                  "noise cannot be met")
    try:
        source, _ = source_of(s.data.source)
    except LearningSettingError as exc:
        raise bad("data.source", f"is not valid: {exc}") from None
    if not source.shared and len(s.data.classes) < 2:
        raise bad("data.classes", f"must list the label values (at least two) for a {source.name} "
                  "source (a hospital's own table), in the same order at every hospital")
