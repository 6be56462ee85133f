"""The project's option-string parser (p2pfl/spec.py) raising the gossip layer's error."""

from __future__ import annotations

from p2pfl import spec
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.spec import is_number

__all__ = ["is_number", "key_values", "number"]


def key_values(text: str, rest: str) -> dict[str, str]:
    """`p2pfl.spec.key_values` raising GossipSettingError."""
    return spec.key_values(text, rest, GossipSettingError)


def number(what: str, text: str) -> float:
    """`p2pfl.spec.number` raising GossipSettingError."""
    return spec.number(what, text, GossipSettingError)
