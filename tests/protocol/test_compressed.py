"""Compressed updates on the wire: round trips and strict checks of what a peer sends."""

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


@pytest.mark.parametrize("spec,tol", [("float16", 1e-3), ("int8", 0.02), ("topk:fraction=0.5", None)])
def test_round_trip(spec, tol):
    c = parse_compression(spec)
    v = torch.randn(P, generator=torch.Generator().manual_seed(1))
    got = from_wire(_update(to_wire(encode_vector(c, v)), str(c)), c, P)
    if tol is None:  # top-k keeps the largest half exactly, zeros elsewhere
        kept = got != 0
        assert int(kept.sum()) == P // 2 and torch.equal(got[kept], v[kept])
    else:
        assert (got - v).abs().max() < tol * v.abs().max() * 4


def test_full_copy_and_encoding_mismatch():
    c = parse_compression("topk:fraction=0.1")
    v = torch.randn(P)
    assert torch.equal(from_wire(_update(full_wire(v), FULL), c, P), v)
    with pytest.raises(InvalidMessage, match="this consortium uses"):
        from_wire(_update(to_wire(encode_vector(parse_compression("int8"), v)), "int8"), c, P)
    with pytest.raises(InvalidMessage, match="expected"):
        from_wire(_update(full_wire(v[:10]), FULL), c, P)


def test_bad_topk_indices_and_values_are_rejected():
    c = parse_compression("topk:fraction=0.01")
    k = 10
    good = {"values": torch.ones(k), "indices": torch.arange(k, dtype=torch.int32)}
    from_wire(_update(good, str(c)), c, P)
    for bad, match in [
        ({"values": torch.ones(k), "indices": torch.arange(k, dtype=torch.int32).flip(0)}, "increasing"),
        ({"values": torch.ones(k), "indices": torch.arange(P - k + 1, P + 1, dtype=torch.int32)}, "within"),
        ({"values": torch.full((k,), float("nan")), "indices": good["indices"]}, "NaN"),
        ({"values": torch.ones(k + 1), "indices": torch.arange(k + 1, dtype=torch.int32)}, "expected"),
        ({"values": torch.ones(k, dtype=torch.float64), "indices": good["indices"]}, "expected"),
        ({"indices": good["indices"], "values": torch.ones(k)}, "expected"),
    ]:
        with pytest.raises(InvalidMessage, match=match):
            from_wire(_update(bad, str(c)), c, P)


def test_encoding_field_is_checked_by_the_codec():
    with pytest.raises(ValueError, match="encoding"):
        encode(KEY, consortium=CONSORTIUM, round=0, fingerprint="a" * 64, num_samples=1, weight=1.0,
               tensors={}, encoding="")
