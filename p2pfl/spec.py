"""The one parser of `name:key=value,...` option strings (aggregators, compressions, topology
parameters, data sources, DP settings). Each layer passes the error kind it raises."""

from __future__ import annotations


def key_values(spec: str, rest: str, error: type[Exception]) -> dict[str, str]:
    """The `key=value` pairs after the colon of `spec`; malformed or repeated keys are errors."""
    out: dict[str, str] = {}
    for part in rest.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise error(f"{spec!r}: parameter {part.strip()!r} is not of the form key=value")
        if key in out:
            raise error(f"{spec!r}: parameter {key} given twice")
        out[key] = value.strip()
    return out


def number(what: str, text: str, error: type[Exception]) -> float:
    """float(text), or the error saying which option is not a number."""
    try:
        return float(text)
    except ValueError:
        raise error(f"{what} must be a number, got {text!r}") from None


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
