"""Compressed updates on the wire: full copies, encoding mismatches and the encoding field.

Each member's own wire checks are tested in tests/compressions/test_comp_<name>.py.
"""

import pytest
import torch

from p2pfl.gossip.compression import encode as encode_vector
from p2pfl.gossip.compression import parse_compression
from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.compressed import FULL, from_wire, full_wire, to_wire
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import generate_key
from p2pfl.protocol.messages import InvalidMessage

KEY = generate_key()
CONSORTIUM = consortium_of({"gossip": {"compression": "topk"}})
P = 1000


def _update(tensors, encoding):
    return decode(bytes(encode(KEY, consortium=CONSORTIUM, round=0, fingerprint="a" * 64, num_samples=1,
                               weight=1.0, tensors=tensors, encoding=encoding)))


def test_full_copy_and_encoding_mismatch():
    c = parse_compression("topk:fraction=0.1")
    v = torch.randn(P)
    assert torch.equal(from_wire(_update(full_wire(v), FULL), c, P), v)
    with pytest.raises(InvalidMessage, match="this consortium uses"):
        from_wire(_update(to_wire(encode_vector(parse_compression("int8"), v)), "int8"), c, P)
    with pytest.raises(InvalidMessage, match="expected"):
        from_wire(_update(full_wire(v[:10]), FULL), c, P)
    with pytest.raises(InvalidMessage, match="expected float32"):
        from_wire(_update({"values": v.half()}, FULL), c, P)
    with pytest.raises(InvalidMessage, match="NaN or infinite"):
        from_wire(_update(full_wire(torch.full((P,), float("nan"))), FULL), c, P)


def test_a_full_copy_is_accepted_whatever_the_compression():
    v = torch.randn(P)
    for spec in ("int8", "float16", "topk:fraction=0.5,gamma=0.2"):
        assert torch.equal(from_wire(_update(full_wire(v), FULL), parse_compression(spec), P), v)


def test_encoding_field_is_checked_by_the_codec():
    with pytest.raises(ValueError, match="encoding"):
        encode(KEY, consortium=CONSORTIUM, round=0, fingerprint="a" * 64, num_samples=1, weight=1.0,
               tensors={}, encoding="")
