"""Top-k sparsification: the k = ceil(fraction * P) largest-magnitude values and their indices.

Always runs through CHOCO-Gossip (Koloskova, Stich and Jaggi, "Decentralized stochastic
optimization and gossip algorithms with compressed communication", ICML 2019): its error
feedback sends later what was not sent yet. gamma defaults to fraction. Each value costs an
int32 index and a float32 value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from p2pfl.gossip.compressions._base import Encoded, Member, Wire, WireError, finite
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.spec import is_number, number
from p2pfl.registry import Param

if TYPE_CHECKING:
    from p2pfl.gossip.compression import Compression


def topk_count(p: int, fraction: float) -> int:
    """k = ceil(fraction * p), at least 1 and at most p."""
    return max(1, min(p, math.ceil(round(fraction * p, 6))))


def topk(v: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (int64, ascending) and values of the k largest-magnitude entries of each row."""
    k = topk_count(v.shape[-1], fraction)
    index = torch.topk(v.abs(), k, dim=-1, sorted=False).indices.sort(dim=-1).values
    return index, torch.gather(v, -1, index)


def densify(index: torch.Tensor, values: torch.Tensor, p: int) -> torch.Tensor:
    """The dense vector(s) [..., p] holding `values` at `index` and zeros elsewhere."""
    out = torch.zeros(*values.shape[:-1], p, dtype=values.dtype)
    return out.scatter_(-1, index.long(), values)


class TopK(Member):
    name = "topk"
    summary = "top-k sparsification with CHOCO-Gossip error feedback (static topologies)"
    params = (Param("fraction", 0.01, "share of the values sent each round, in (0, 1]"),
              Param("gamma", None, "CHOCO consensus step in (0, 1]; default: fraction"))
    paper = ("Koloskova, Stich and Jaggi, Decentralized stochastic optimization and gossip algorithms "
             "with compressed communication, ICML 2019")

    def parse_value(self, key: str, text: str) -> object:
        if key == "fraction":
            return number("topk: fraction", text)
        return super().parse_value(key, text)

    def check(self, values: Mapping[str, object]) -> None:
        fraction = values["fraction"]
        if not (is_number(fraction) and 0 < fraction <= 1):  # type: ignore[operator]
            raise GossipSettingError(f"topk: fraction must be in (0, 1], got {fraction!r}")

    def default_gamma(self, values: Mapping[str, object]) -> float | None:
        return float(values["fraction"])  # type: ignore[arg-type]

    def encode(self, c: Compression, v: torch.Tensor, generator: torch.Generator | None) -> Encoded:
        index, values = topk(v, c.fraction)
        return Encoded(self.name, v.shape[-1], values, indices=index.to(torch.int32))

    def decode(self, e: Encoded) -> torch.Tensor:
        if e.indices is None:
            raise ValueError("a topk payload needs indices")
        return densify(e.indices, e.values.float(), e.size)

    def encoded_bytes(self, c: Compression, p: int) -> int:
        return 8 * topk_count(p, c.fraction)  # int32 index + float32 value

    def wire(self, c: Compression, p: int) -> Wire:
        k = topk_count(p, c.fraction)
        return {"values": (torch.float32, (k,)), "indices": (torch.int32, (k,))}

    def received(self, c: Compression, p: int, tensors: Mapping[str, torch.Tensor]) -> Encoded:
        idx = tensors["indices"].long()
        if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= p or bool((idx[1:] <= idx[:-1]).any())):
            raise WireError(f"top-k indices must be strictly increasing within [0, {p})")
        return Encoded(self.name, p, finite(tensors["values"]), indices=tensors["indices"])


COMPONENT = TopK()
