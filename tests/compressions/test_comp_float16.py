"""The `float16` member: casting, saturation, payload size and wire checks."""

import pytest
import torch
from wire_helpers import received, refused

from p2pfl.gossip.compression import encode, encoded_bytes, from_float16, parse_compression, to_float16
from p2pfl.gossip.errors import GossipSettingError

P = 1000


def test_float16_specs_parse_and_print_back():
    assert not parse_compression("float16").choco
    for spec in ["float16", "float16:gamma=1"]:
        assert str(parse_compression(spec)) == spec
        assert parse_compression(str(parse_compression(spec))) == parse_compression(spec)
    assert parse_compression("float16:gamma=0.5").gamma == 0.5
    with pytest.raises(GossipSettingError) as err:
        parse_compression("float16:chunk=3")
    assert str(err.value) == "compression float16 does not take chunk (takes: gamma)"
    with pytest.raises(GossipSettingError) as err:
        parse_compression("float16:gamma=2")
    assert str(err.value) == "float16: gamma must be in (0, 1], got 2.0"


def test_float16_round_trip_error_bound_and_saturation():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(10_000, generator=g) * torch.logspace(-6, 4, 10_000)
    back = from_float16(to_float16(v))
    # float16 keeps 11 significant bits: relative error <= 2^-11; below 2^-14 subnormals, <= 2^-25
    assert ((back - v).abs() <= 2.0**-11 * v.abs() + 2.0**-25).all()
    big = from_float16(to_float16(torch.tensor([1e6, -1e9, 65504.0])))
    assert big.tolist() == [65504.0, -65504.0, 65504.0]


def test_float16_payload_is_two_bytes_per_value():
    assert encoded_bytes(parse_compression("float16"), 1000) == 2000


def test_float16_wire_round_trip():
    c = parse_compression("float16")
    v = torch.randn(P, generator=torch.Generator().manual_seed(1))
    got = received({"values": encode(c, v).values}, c, P)
    assert (got - v).abs().max() < 1e-3 * v.abs().max() * 4


def test_float16_wire_checks_refuse_wrong_dtype_shape_and_non_finite_values():
    c = parse_compression("float16")
    h = torch.randn(P).half()
    refused({"values": h.float()}, c, P, "is float32 .* expected float16")
    refused({"values": h[:10]}, c, P, r"expected float16 \(1000,\)")
    refused({"values": h.reshape(10, 100)}, c, P, r"\(10, 100\), expected float16 \(1000,\)")
    for bad in (float("nan"), float("-inf")):
        t = h.clone()
        t[7] = bad
        refused({"values": t}, c, P, "NaN or infinite")
