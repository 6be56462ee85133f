"""No compression: the model itself, as float32 values (four bytes per parameter).

Its wire form, one float32 vector of P values, is also that of CHOCO's periodic full copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from p2pfl.gossip.compressions._base import Encoded, Member, Wire, finite

if TYPE_CHECKING:
    from p2pfl.gossip.compression import Compression


class NoCompression(Member):
    name = "none"
    summary = "send the full float32 model (default)"
    identity = True

    def encode(self, c: Compression, v: torch.Tensor, generator: torch.Generator | None) -> Encoded:
        return Encoded(self.name, v.shape[-1], v.clone())

    def decode(self, e: Encoded) -> torch.Tensor:
        return e.values.float()

    def encoded_bytes(self, c: Compression, p: int) -> int:
        return 4 * p

    def wire(self, c: Compression, p: int) -> Wire:
        return {"values": (torch.float32, (p,))}

    def received(self, c: Compression, p: int, tensors: Mapping[str, torch.Tensor]) -> Encoded:
        return Encoded(self.name, p, finite(tensors["values"]))


COMPONENT = NoCompression()
