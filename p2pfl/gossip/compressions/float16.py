"""float16 casting: two bytes per value, saturating at +-65504 instead of overflowing to inf.

Sent directly, or through CHOCO-Gossip with `gamma` (Koloskova, Stich and Jaggi, ICML 2019).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from p2pfl.gossip.compressions._base import GAMMA, Encoded, Member, Wire, finite

if TYPE_CHECKING:
    from p2pfl.gossip.compression import Compression

FLOAT16_MAX = 65504.0


def to_float16(v: torch.Tensor) -> torch.Tensor:
    """float16 copy, saturating at +-65504 instead of overflowing to inf."""
    return v.clamp(-FLOAT16_MAX, FLOAT16_MAX).half()


def from_float16(h: torch.Tensor) -> torch.Tensor:
    """float32 copy of float16 values (exact)."""
    return h.float()


class Float16(Member):
    name = "float16"
    summary = "cast to float16 (2 bytes per value)"
    params = (GAMMA,)
    paper = ("Koloskova, Stich and Jaggi, Decentralized stochastic optimization and gossip algorithms "
             "with compressed communication, ICML 2019 (with gamma)")

    def encode(self, c: Compression, v: torch.Tensor, generator: torch.Generator | None) -> Encoded:
        return Encoded(self.name, v.shape[-1], to_float16(v))

    def decode(self, e: Encoded) -> torch.Tensor:
        return from_float16(e.values)

    def encoded_bytes(self, c: Compression, p: int) -> int:
        return 2 * p

    def wire(self, c: Compression, p: int) -> Wire:
        return {"values": (torch.float16, (p,))}

    def received(self, c: Compression, p: int, tensors: Mapping[str, torch.Tensor]) -> Encoded:
        return Encoded(self.name, p, finite(tensors["values"]))


COMPONENT = Float16()
