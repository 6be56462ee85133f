"""The `int8` member: chunked symmetric quantisation, rounding, payload size and wire checks."""

import math

import pytest
import torch
from wire_helpers import received, refused

from p2pfl.gossip.compression import (
    Compression,
    dequantize_int8,
    encode,
    encoded_bytes,
    parse_compression,
    quantize_int8,
)
from p2pfl.gossip.errors import GossipSettingError

P = 1000


def test_int8_specs_parse_with_defaults_and_print_back():
    assert parse_compression("int8") == Compression("int8", chunk=256, rounding="nearest")
    assert not parse_compression("int8").choco
    assert parse_compression("int8:chunk=0,rounding=stochastic,gamma=1").choco
    for spec in ["int8:chunk=64,rounding=stochastic", "int8:chunk=0,rounding=nearest,gamma=0.8"]:
        assert str(parse_compression(spec)) == spec
        assert parse_compression(str(parse_compression(spec))) == parse_compression(spec)
    assert str(parse_compression("int8")) == "int8:chunk=256,rounding=nearest"  # the wire encoding


@pytest.mark.parametrize("spec,message", [
    ("int8:chunk=-1", "int8: chunk must be a non-negative integer (0: one scale), got -1"),
    ("int8:chunk=2.5", "int8: chunk must be a non-negative integer (0: one scale), got '2.5'"),
    ("int8:rounding=up", "int8: rounding must be nearest or stochastic, got 'up'"),
    ("int8:gamma=0", "int8: gamma must be in (0, 1], got 0.0"),
    ("int8:fraction=0.1", "compression int8 does not take fraction (takes: chunk, rounding, gamma)"),
])
def test_int8_rejects_bad_specs_with_one_clear_message(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_compression(spec)
    assert str(err.value) == message


@pytest.mark.parametrize("chunk", [0, 7, 64, 256])
def test_int8_nearest_error_is_at_most_half_a_step_of_its_chunk(chunk):
    g = torch.Generator().manual_seed(2)
    v = torch.randn(3, 1000, generator=g) * torch.linspace(0.01, 10, 1000)
    q, scales = quantize_int8(v, chunk)
    width = 1000 if chunk == 0 else chunk
    assert q.dtype == torch.int8 and q.shape == v.shape
    assert scales.shape == (3, math.ceil(1000 / width))
    assert q.abs().max() == 127  # the largest value of each chunk uses the full range
    back = dequantize_int8(q, scales, chunk)
    step = scales.repeat_interleave(width, dim=1)[:, :1000]
    assert ((back - v).abs() <= step / 2 * (1 + 1e-5) + 1e-12).all()


def test_int8_stochastic_rounding_is_unbiased_and_within_one_step():
    g = torch.Generator().manual_seed(3)
    v = torch.randn(200, generator=g)
    draws = torch.stack([dequantize_int8(*quantize_int8(v, 50, "stochastic", g), 50) for _ in range(2000)])
    _, scales = quantize_int8(v, 50)
    step = scales.repeat_interleave(50)
    assert ((draws - v).abs() < step * (1 + 1e-5)).all()
    # unbiased: the mean of 2,000 draws is within 5 standard errors (<= step / 2 / sqrt(2000))
    assert ((draws.mean(dim=0) - v).abs() <= 5 * step / 2 / math.sqrt(2000)).all()
    a = quantize_int8(v, 50, "stochastic", torch.Generator().manual_seed(9))
    b = quantize_int8(v, 50, "stochastic", torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        quantize_int8(v, 50, "stochastic")


def test_int8_of_zeros_is_zeros():
    q, scales = quantize_int8(torch.zeros(2, 10), 4)
    assert torch.equal(dequantize_int8(q, scales, 4), torch.zeros(2, 10))


def test_int8_payload_is_one_byte_per_value_and_four_per_scale():
    assert encoded_bytes(parse_compression("int8:chunk=256"), 1000) == 1000 + 4 * 4
    assert encoded_bytes(parse_compression("int8:chunk=0"), 1000) == 1004
    assert encoded_bytes(parse_compression("int8:chunk=7"), 10) == 10 + 4 * 2


def test_int8_wire_round_trip():
    c = parse_compression("int8")
    v = torch.randn(P, generator=torch.Generator().manual_seed(1))
    e = encode(c, v)
    got = received({"values": e.values, "scales": e.scales}, c, P)
    assert (got - v).abs().max() < 0.02 * v.abs().max() * 4


def test_int8_wire_checks_refuse_wrong_dtype_shape_and_non_finite_values():
    c = parse_compression("int8:chunk=256")  # 1000 values: 4 scales
    q, scales = torch.ones(P, dtype=torch.int8), torch.ones(4)
    received({"values": q, "scales": scales}, c, P)
    refused({"values": q.to(torch.uint8), "scales": scales}, c, P, "is uint8 .* expected int8")
    refused({"values": q, "scales": scales.double()}, c, P, "'scales' is float64 .* expected float32")
    refused({"values": q[:999], "scales": scales}, c, P, r"expected int8 \(1000,\)")
    refused({"values": q, "scales": torch.ones(3)}, c, P, r"expected float32 \(4,\)")
    refused({"values": q}, c, P, r"expected \['values', 'scales'\]")
    refused({"scales": scales, "values": q}, c, P, "expected")
    for bad in (float("nan"), float("inf")):
        refused({"values": q, "scales": torch.tensor([1.0, bad, 1.0, 1.0])}, c, P, "NaN or infinite")
    refused({"values": q, "scales": torch.tensor([1.0, -1.0, 1.0, 1.0])}, c, P, "must not be negative")
    # finite scales whose products overflow float32 are caught on the decoded vector
    refused({"values": q * 127, "scales": torch.full((4,), 3e38)}, c, P, "NaN or infinite")
