"""Parsing `name:key=value,...` option strings (aggregators, compression) with clear errors."""

from __future__ import annotations

from p2pfl.gossip.errors import GossipSettingError


def key_values(spec: str, rest: str) -> dict[str, str]:
    """The `key=value` pairs after the colon of `spec`; malformed or repeated keys are errors."""
    out: dict[str, str] = {}
    for part in rest.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise GossipSettingError(f"{spec!r}: parameter {part.strip()!r} is not of the form key=value")
        if key in out:
            raise GossipSettingError(f"{spec!r}: parameter {key} given twice")
        out[key] = value.strip()
    return out


def number(what: str, text: str) -> float:
    """float(text), or a GossipSettingError saying which option is not a number."""
    try:
        return float(text)
    except ValueError:
        raise GossipSettingError(f"{what} must be a number, got {text!r}") from None


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
