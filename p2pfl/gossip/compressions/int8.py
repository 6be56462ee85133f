"""int8 quantisation: symmetric, one float32 scale per chunk of `chunk` values (0: one per vector).

scale = max|v| / 127 over the chunk, q = round(v / scale) in [-127, 127]. Rounding is to
nearest (deterministic; error at most scale / 2) or stochastic (floor(v / scale + u),
u ~ U[0, 1) from a seeded generator; unbiased, error below scale: Gupta, Agrawal,
Gopalakrishnan and Narayanan, "Deep learning with limited numerical precision", ICML 2015).
One byte per value plus four per scale. Sent directly, or through CHOCO-Gossip with `gamma`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from p2pfl.gossip.compressions._base import GAMMA, Encoded, Member, Wire, WireError, finite
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.registry import Param

if TYPE_CHECKING:
    from p2pfl.gossip.compression import Compression

ROUNDINGS = ("nearest", "stochastic")
INT8_LEVELS = 127
_CHUNK_ERROR = "int8: chunk must be a non-negative integer (0: one scale), got {!r}"


def quantize_int8(
    v: torch.Tensor, chunk: int = 256, rounding: str = "nearest", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes [..., P] and float32 scales [..., chunks] (max|v| / 127 per chunk).

    Stochastic rounding needs a generator (seeded, so runs repeat).
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be nearest or stochastic, got {rounding!r}")
    p = v.shape[-1]
    blocks = _blocks(v.float(), chunk)
    scale = blocks.abs().amax(dim=-1) / INT8_LEVELS
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    y = blocks / safe[..., None]
    if rounding == "nearest":
        y = torch.round(y)
    else:
        if generator is None:
            raise ValueError("stochastic rounding needs a torch.Generator")
        y = torch.floor(y + torch.rand(y.shape, generator=generator))
    q = y.clamp_(-INT8_LEVELS, INT8_LEVELS).to(torch.int8).reshape(*v.shape[:-1], -1)[..., :p]
    return q, scale


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """float32 values [..., P] of int8 codes and their per-chunk scales."""
    p = q.shape[-1]
    blocks = _blocks(q.float(), chunk)
    return (blocks * scales[..., None]).reshape(*q.shape[:-1], -1)[..., :p]


def chunk_width(p: int, chunk: int) -> int:
    """Values per scale for a vector of p values (chunk 0 or >= p: the whole vector)."""
    return max(p if chunk == 0 or chunk >= p else chunk, 1)


def scale_count(p: int, chunk: int) -> int:
    """Number of scales of a vector of p values."""
    return math.ceil(p / chunk_width(p, chunk)) if p else 0


def _blocks(v: torch.Tensor, chunk: int) -> torch.Tensor:
    """v [..., P] zero-padded and viewed as [..., chunks, width]."""
    width = chunk_width(v.shape[-1], chunk)
    pad = (-v.shape[-1]) % width
    if pad:
        v = torch.nn.functional.pad(v, (0, pad))
    return v.reshape(*v.shape[:-1], -1, width)


class Int8(Member):
    name = "int8"
    summary = "symmetric int8 quantisation, one float32 scale per chunk (1 byte per value)"
    params = (Param("chunk", 256, "values per scale; 0: one scale per vector"),
              Param("rounding", "nearest", "nearest or stochastic (unbiased, seeded)"),
              GAMMA)
    paper = ("Gupta, Agrawal, Gopalakrishnan and Narayanan, Deep learning with limited numerical "
             "precision, ICML 2015 (stochastic rounding)")

    def parse_value(self, key: str, text: str) -> object:
        if key == "chunk":
            try:
                return int(text)
            except ValueError:
                raise GossipSettingError(_CHUNK_ERROR.format(text)) from None
        if key == "rounding":
            return text
        return super().parse_value(key, text)

    def check(self, values: Mapping[str, object]) -> None:
        chunk, rounding = values["chunk"], values["rounding"]
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            raise GossipSettingError(_CHUNK_ERROR.format(chunk))
        if rounding not in ROUNDINGS:
            raise GossipSettingError(f"int8: rounding must be nearest or stochastic, got {rounding!r}")

    def encode(self, c: Compression, v: torch.Tensor, generator: torch.Generator | None) -> Encoded:
        q, scales = quantize_int8(v, c.chunk, c.rounding, generator)
        return Encoded(self.name, v.shape[-1], q, scales=scales, chunk=c.chunk)

    def decode(self, e: Encoded) -> torch.Tensor:
        if e.scales is None:
            raise ValueError("an int8 payload needs scales")
        return dequantize_int8(e.values, e.scales, e.chunk)

    def encoded_bytes(self, c: Compression, p: int) -> int:
        return p + 4 * scale_count(p, c.chunk)

    def wire(self, c: Compression, p: int) -> Wire:
        return {"values": (torch.int8, (p,)), "scales": (torch.float32, (scale_count(p, c.chunk),))}

    def received(self, c: Compression, p: int, tensors: Mapping[str, torch.Tensor]) -> Encoded:
        scales = finite(tensors["scales"])
        if bool((scales < 0).any()):
            raise WireError("int8 scales must not be negative")
        return Encoded(self.name, p, tensors["values"], scales=scales, chunk=c.chunk)


COMPONENT = Int8()
