"""What every compression member provides, and the payload type they all produce.

A member (one module of `p2pfl.gossip.compressions`, its `COMPONENT`) owns everything
particular to one compressor: its `name:key=value` parameters (typed by `parse_value`,
validated by `check`), `encode` / `decode` of a vector [P] or stack [N, P], the exact
`encoded_bytes` of one vector, and its wire checks: `wire` (the tensors, dtypes and shapes a
P-parameter update carries) and `received` (the value checks of those tensors). The facade
`p2pfl.gossip.compression` and `p2pfl.protocol.compressed` only call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.spec import is_number, number
from p2pfl.registry import Param

if TYPE_CHECKING:
    from p2pfl.gossip.compression import Compression

Wire = dict[str, tuple[torch.dtype, tuple[int, ...]]]  # tensor name -> (dtype, shape), in order

GAMMA = Param("gamma", None, "CHOCO consensus step in (0, 1]; unset: send the compressed model directly")


class WireError(Exception):
    """Received tensors that compression could not have produced (the protocol turns this into
    an InvalidMessage with the same text)."""


@dataclass(frozen=True)
class Encoded:
    """A compressed vector [P] or stack of vectors [N, P] as it goes on the wire.

    values: float32 (none, topk), int8 or float16; indices: int32 (topk); scales: float32 (int8).
    """

    name: str
    size: int
    values: torch.Tensor
    indices: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    chunk: int = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors present, in wire order: values, indices, scales."""
        out = {"values": self.values, "indices": self.indices, "scales": self.scales}
        return {k: t for k, t in out.items() if t is not None}

    def nbytes(self) -> int:
        """Payload bytes of all rows together (values + indices + scales)."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


class Member:
    """Base of the compression members: parameter handling shared by all (gamma), the rest
    abstract. Subclasses set `name`, `summary`, `params`, `paper`."""

    name: str = ""
    summary: str = ""
    params: tuple[Param, ...] = ()
    paper: str = ""
    identity: bool = False  # True: the update is the model itself (sent dense, not compressed)

    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def check_keys(self, given: Iterable[str]) -> None:
        """GossipSettingError naming the given parameter keys that this member does not take."""
        unknown = sorted(set(given) - set(self.keys()))
        if unknown:
            raise GossipSettingError(f"compression {self.name} does not take {', '.join(unknown)} "
                            f"(takes: {', '.join(self.keys()) or 'none'})")

    def parse_value(self, key: str, text: str) -> object:
        """The typed value of `key=text` (gamma here; members add their own keys)."""
        if key == GAMMA.key:
            return number(f"{self.name}: gamma", text)
        raise KeyError(key)  # parse_compression only passes declared keys

    def check(self, values: Mapping[str, object]) -> None:
        """GossipSettingError for a bad value among the member's own parameters (gamma is checked after)."""

    def default_gamma(self, values: Mapping[str, object]) -> float | None:
        """gamma when none is given: None (direct), or a step for members that are always CHOCO."""
        return None

    def check_gamma(self, gamma: object) -> None:
        if gamma is not None and not (is_number(gamma) and 0 < gamma <= 1):  # type: ignore[operator]
            raise GossipSettingError(f"{self.name}: gamma must be in (0, 1], got {gamma!r}")

    def encode(self, c: Compression, v: torch.Tensor, generator: torch.Generator | None) -> Encoded:
        raise NotImplementedError

    def decode(self, e: Encoded) -> torch.Tensor:
        raise NotImplementedError

    def encoded_bytes(self, c: Compression, p: int) -> int:
        raise NotImplementedError

    def wire(self, c: Compression, p: int) -> Wire:
        """The tensors (name -> dtype, shape), in order, of one update of a p-parameter model."""
        raise NotImplementedError

    def received(self, c: Compression, p: int, tensors: Mapping[str, torch.Tensor]) -> Encoded:
        """The payload of tensors that already match `wire`, after the value checks; WireError."""
        raise NotImplementedError


def finite(t: torch.Tensor) -> torch.Tensor:
    """t, or a WireError if it holds a NaN or an infinity."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise WireError("compressed update has NaN or infinite values")
    return t
