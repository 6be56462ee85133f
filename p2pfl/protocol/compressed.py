"""Compressed model vectors on the wire, and their strict checks on arrival.

A compressed update carries one flat parameter vector (float32 [P] in model order) in the
form of `p2pfl.gossip.compression.Encoded`: tensors `values` (float16, int8 or float32),
`indices` (int32, top-k) and `scales` (float32, int8). The header's `encoding` names the
compression spec, which every member must share; CHOCO's periodic full copies use
`FULL` = "choco-full" with a float32 `values` of length P.
"""

from __future__ import annotations

import math

import torch

from p2pfl.gossip.compression import Compression, Encoded, decode, topk_count
from p2pfl.protocol.codec import state_dict
from p2pfl.protocol.messages import InvalidMessage, ModelUpdate, ProtocolViolation

FULL = "choco-full"


def to_wire(e: Encoded) -> dict[str, torch.Tensor]:
    """The tensors of a compressed update, in a fixed order."""
    out = {"values": e.values.contiguous()}
    if e.indices is not None:
        out["indices"] = e.indices.to(torch.int32).contiguous()
    if e.scales is not None:
        out["scales"] = e.scales.float().contiguous()
    return out


def full_wire(x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """A CHOCO full copy: the sender's public vector, uncompressed."""
    return {"values": x_hat.detach().float().contiguous()}


def from_wire(update: ModelUpdate, c: Compression, p: int) -> torch.Tensor:
    """The float32 vector [P] an update carries, after checking every tensor against what
    compression `c` of a P-parameter model produces. Raises InvalidMessage."""
    tensors = state_dict(update)
    if update.encoding == FULL:
        _expect(tensors, {"values": (torch.float32, (p,))})
        return _finite(tensors["values"].float())
    if update.encoding != str(c):
        raise ProtocolViolation(f"update is encoded as {update.encoding!r}, this consortium uses {str(c)!r}")
    if c.name == "topk":
        k = topk_count(p, c.fraction)
        _expect(tensors, {"values": (torch.float32, (k,)), "indices": (torch.int32, (k,))})
        idx = tensors["indices"].long()
        if k and (int(idx[0]) < 0 or int(idx[-1]) >= p or bool((idx[1:] <= idx[:-1]).any())):
            raise InvalidMessage(f"top-k indices must be strictly increasing within [0, {p})")
        e = Encoded("topk", p, _finite(tensors["values"]), indices=tensors["indices"])
    elif c.name == "int8":
        width = p if c.chunk == 0 or c.chunk >= p else c.chunk
        chunks = math.ceil(p / width) if p else 0
        _expect(tensors, {"values": (torch.int8, (p,)), "scales": (torch.float32, (chunks,))})
        scales = _finite(tensors["scales"])
        if bool((scales < 0).any()):
            raise InvalidMessage("int8 scales must not be negative")
        e = Encoded("int8", p, tensors["values"], scales=scales, chunk=c.chunk)
    elif c.name == "float16":
        _expect(tensors, {"values": (torch.float16, (p,))})
        e = Encoded("float16", p, _finite(tensors["values"]))
    else:
        raise InvalidMessage(f"compression {c} has no wire form")
    return _finite(decode(e))


def _expect(tensors: dict[str, torch.Tensor], spec: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> None:
    if list(tensors) != list(spec):
        raise InvalidMessage(f"compressed update has tensors {list(tensors)}, expected {list(spec)}")
    for name, (dtype, shape) in spec.items():
        t = tensors[name]
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise InvalidMessage(f"tensor {name!r} is {str(t.dtype).removeprefix('torch.')} "
                                 f"{tuple(t.shape)}, expected {str(dtype).removeprefix('torch.')} {shape}")


def _finite(t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise InvalidMessage("compressed update has NaN or infinite values")
    return t
