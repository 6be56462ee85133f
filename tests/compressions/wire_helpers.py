"""Signed updates carrying hand-made tensors, for the wire checks of the compression members."""

import pytest
import torch

from p2pfl.gossip.compression import Compression
from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.compressed import from_wire
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import generate_key
from p2pfl.protocol.messages import InvalidMessage, ModelUpdate

KEY = generate_key()
CONSORTIUM = consortium_of({"gossip": {"compression": "topk"}})


def signed_update(tensors: dict[str, torch.Tensor], encoding: str) -> ModelUpdate:
    """What a peer's update with these tensors and encoding decodes to on arrival."""
    return decode(bytes(encode(KEY, consortium=CONSORTIUM, round=0, fingerprint="a" * 64, num_samples=1,
                               weight=1.0, tensors=tensors, encoding=encoding)))


def received(tensors: dict[str, torch.Tensor], c: Compression, p: int) -> torch.Tensor:
    """from_wire of an update carrying `tensors` encoded as `c`."""
    return from_wire(signed_update(tensors, str(c)), c, p)


def refused(tensors: dict[str, torch.Tensor], c: Compression, p: int, match: str) -> None:
    """Assert that from_wire refuses these tensors with a message matching `match`."""
    with pytest.raises(InvalidMessage, match=match):
        received(tensors, c, p)
