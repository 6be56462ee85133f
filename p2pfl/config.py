"""Typed configuration from TOML files and command-line flags; errors name file, key, reason."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.sim.settings import SimConfig


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file; a missing file or a syntax error is a UserError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


def sim_config(path: Path | None, flags: dict[str, object]) -> SimConfig:
    """SimConfig from defaults, then the TOML file, then the flags that were given."""
    values: dict[str, object] = {}
    if path is not None:
        values.update(_checked(read_toml(path), str(path)))
    values.update({k: v for k, v in flags.items() if v is not None})
    return SimConfig(**values)


def _checked(raw: dict[str, object], where: str) -> dict[str, object]:
    """Check every key and value type of a simulate TOML table against SimConfig."""
    fields = {f.name: f for f in dataclasses.fields(SimConfig)}
    hints = typing.get_type_hints(SimConfig)
    out: dict[str, object] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise UserError(f"{where}: unknown key {key!r} (known: {', '.join(fields)})")
        if name == "param" and isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        if name == "hidden" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if not _matches(value, hints[name]):
            raise UserError(f"{where}: key {key!r} must be {_describe(hints[name])}, got {value!r}")
        out[name] = float(value) if hints[name] is float else value
    return out


def _matches(value: object, hint: object) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, hint)  # type: ignore[arg-type]


def _describe(hint: object) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))
