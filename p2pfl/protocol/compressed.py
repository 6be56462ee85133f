"""Compressed model vectors on the wire, and their strict checks on arrival.

A compressed update carries one flat parameter vector (float32 [P] in model order) in the
form of `p2pfl.gossip.compression.Encoded`: the tensors its compression member names
(`values`, plus `indices` for top-k, `scales` for int8). The header's `encoding` names the
compression spec, which every member must share; CHOCO's periodic full copies use
`FULL` = "choco-full" with the wire form of no compression (a float32 `values` of length P).
What a member's tensors must look like, and their value checks, are the member's own
(`wire`, `received`); this module applies them to any member alike.
"""

from __future__ import annotations

import torch

from p2pfl.gossip.compression import Compression, Encoded, Wire, WireError, decode, finite
from p2pfl.protocol.codec import state_dict
from p2pfl.protocol.messages import InvalidMessage, ModelUpdate, ProtocolViolation

FULL = "choco-full"
_UNCOMPRESSED = Compression()  # the wire form of a full copy


def to_wire(e: Encoded) -> dict[str, torch.Tensor]:
    """The tensors of a compressed update, in a fixed order."""
    return {name: t.contiguous() for name, t in e.tensors().items()}


def full_wire(x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """A CHOCO full copy: the sender's public vector, uncompressed."""
    return {"values": x_hat.detach().float().contiguous()}


def from_wire(update: ModelUpdate, c: Compression, p: int) -> torch.Tensor:
    """The float32 vector [P] an update carries, after checking every tensor against what
    compression `c` of a P-parameter model produces. Raises InvalidMessage."""
    tensors = state_dict(update)
    if update.encoding == FULL:
        c = _UNCOMPRESSED
    elif update.encoding != str(c):
        raise ProtocolViolation(f"update is encoded as {update.encoding!r}, this consortium uses "
                                f"{str(c)!r}")
    _expect(tensors, c.member.wire(c, p))
    try:
        return finite(decode(c.member.received(c, p, tensors)))
    except WireError as exc:
        raise InvalidMessage(str(exc)) from None


def _expect(tensors: dict[str, torch.Tensor], spec: Wire) -> None:
    if list(tensors) != list(spec):
        raise InvalidMessage(f"compressed update has tensors {list(tensors)}, expected {list(spec)}")
    for name, (dtype, shape) in spec.items():
        t = tensors[name]
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise InvalidMessage(f"tensor {name!r} is {str(t.dtype).removeprefix('torch.')} "
                                 f"{tuple(t.shape)}, expected {str(dtype).removeprefix('torch.')} {shape}")
