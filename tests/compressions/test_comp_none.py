"""The `none` member: the model itself, float32; also the wire form of CHOCO's full copies."""

import pytest
import torch
from wire_helpers import received, refused

from p2pfl.gossip.compression import (
    COMPRESSIONS,
    Compression,
    compress,
    encode,
    encoded_bytes,
    parse_compression,
)
from p2pfl.gossip.errors import GossipSettingError

P = 100


def test_none_is_the_default_identity_and_takes_no_parameters():
    assert parse_compression("none") == Compression()
    assert str(parse_compression("none")) == "none"
    c = parse_compression("none")
    assert c.is_identity and not c.choco and c.member is COMPRESSIONS.get("none")
    assert not parse_compression("float16").is_identity
    with pytest.raises(GossipSettingError) as err:
        parse_compression("none:gamma=1")
    assert str(err.value) == "compression none does not take gamma (takes: none)"


def test_none_sends_four_bytes_per_value_exactly():
    v = torch.randn(3, P)
    assert encoded_bytes(Compression(), 1000) == 4000
    assert torch.equal(compress(Compression(), v), v)
    assert compress(Compression(), v) is not v  # a copy: the sender may change its model after


def test_none_wire_checks_refuse_wrong_dtype_shape_and_non_finite_values():
    c = Compression()
    v = torch.randn(P)
    assert torch.equal(received({"values": encode(c, v).values}, c, P), v)
    refused({"values": v.double()}, c, P, "expected float32")
    refused({"values": v[:-1]}, c, P, r"expected float32 \(100,\)")
    refused({"values": v, "scales": torch.ones(1)}, c, P, "expected \\['values'\\]")
    for bad in (float("nan"), float("inf")):
        refused({"values": torch.full((P,), bad)}, c, P, "NaN or infinite")
