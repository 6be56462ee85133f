"""Reading TOML files and checking values against type hints, with errors that name the place."""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path

from p2pfl.errors import UserError


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file; a missing file or a syntax error is a UserError naming the file."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


def matches(value: object, hint: object) -> bool:
    """Whether a TOML value fits a type hint (int, float, str, bool, X | None, list[X], dict)."""
    if isinstance(hint, types.UnionType):
        return any(matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)  # type: ignore[arg-type]


def describe(hint: object) -> str:
    """'an integer', 'a list of strings', ... for error messages."""
    if isinstance(hint, types.UnionType):
        return " or ".join(describe(h) for h in typing.get_args(hint) if h is not type(None))
    origin = typing.get_origin(hint)
    if origin is list:
        item = describe(typing.get_args(hint)[0]).removeprefix("an ").removeprefix("a ")
        return f"a list of {item}s"
    if origin is dict:
        return "a table"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, str(hint))  # type: ignore[call-overload]
