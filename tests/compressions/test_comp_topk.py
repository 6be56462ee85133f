"""The `topk` member: top-k selection, CHOCO by default, payload size and wire checks."""

import pytest
import torch
from wire_helpers import received, refused

from p2pfl.gossip.compression import densify, encode, encoded_bytes, parse_compression, topk, topk_count
from p2pfl.gossip.errors import GossipSettingError

P = 1000


def test_topk_specs_parse_with_gamma_defaulting_to_fraction():
    c = parse_compression("topk:fraction=0.01,gamma=0.5")
    assert (c.name, c.fraction, c.gamma, c.choco) == ("topk", 0.01, 0.5, True)
    assert parse_compression("topk:fraction=0.1").gamma == 0.1  # top-k is always CHOCO
    assert parse_compression("topk").fraction == 0.01
    spec = "topk:fraction=0.01,gamma=0.5"
    assert str(parse_compression(spec)) == spec
    assert parse_compression(str(parse_compression(spec))) == parse_compression(spec)


@pytest.mark.parametrize("spec,message", [
    ("topk:fraction=0", "topk: fraction must be in (0, 1], got 0.0"),
    ("topk:fraction=1.5", "topk: fraction must be in (0, 1], got 1.5"),
    ("topk:fraction=a", "topk: fraction must be a number, got 'a'"),
    ("topk:fraction=0.1,gamma=0", "topk: gamma must be in (0, 1], got 0.0"),
    ("topk:k=3", "compression topk does not take k (takes: fraction, gamma)"),
])
def test_topk_rejects_bad_specs_with_one_clear_message(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_compression(spec)
    assert str(err.value) == message


def test_topk_keeps_exactly_the_k_largest_magnitudes_of_each_row():
    assert [topk_count(100, f) for f in (0.07, 0.1, 0.29, 0.001, 1.0)] == [7, 10, 29, 1, 100]
    assert topk_count(101, 0.1) == 11
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 200, generator=g)
    index, values = topk(v, 0.1)
    assert index.shape == values.shape == (5, 20) and index.dtype == torch.int64
    for row in range(5):
        expected = set(torch.argsort(v[row].abs(), descending=True)[:20].tolist())
        assert set(index[row].tolist()) == expected
        assert torch.equal(values[row], v[row, index[row]])
        assert (index[row].diff() > 0).all()
    dense = densify(index, values, 200)
    assert torch.equal(dense != 0, torch.zeros_like(v, dtype=torch.bool).scatter_(1, index, True))
    one_index, one_values = topk(v[2], 0.1)
    assert torch.equal(one_index, index[2]) and torch.equal(one_values, values[2])


def test_topk_payload_is_an_int32_index_and_a_float32_value_per_kept_value():
    assert encoded_bytes(parse_compression("topk:fraction=0.01"), 1000) == 10 * (4 + 4)
    assert encoded_bytes(parse_compression("topk:fraction=0.1"), 101) == 11 * 8


def test_topk_wire_round_trip_keeps_the_largest_half_exactly():
    c = parse_compression("topk:fraction=0.5")
    v = torch.randn(P, generator=torch.Generator().manual_seed(1))
    e = encode(c, v)
    got = received({"values": e.values, "indices": e.indices}, c, P)
    kept = got != 0
    assert int(kept.sum()) == P // 2 and torch.equal(got[kept], v[kept])


def test_bad_topk_indices_and_values_are_rejected():
    c = parse_compression("topk:fraction=0.01")
    k = 10
    good = {"values": torch.ones(k), "indices": torch.arange(k, dtype=torch.int32)}
    received(good, c, P)
    for bad, match in [
        ({"values": torch.ones(k), "indices": torch.arange(k, dtype=torch.int32).flip(0)}, "increasing"),
        ({"values": torch.ones(k), "indices": torch.arange(P - k + 1, P + 1, dtype=torch.int32)}, "within"),
        ({"values": torch.ones(k), "indices": torch.arange(-1, k - 1, dtype=torch.int32)}, "within"),
        ({"values": torch.ones(k), "indices": torch.zeros(k, dtype=torch.int32)}, "strictly increasing"),
        ({"values": torch.full((k,), float("nan")), "indices": good["indices"]}, "NaN"),
        ({"values": torch.ones(k + 1), "indices": torch.arange(k + 1, dtype=torch.int32)}, "expected"),
        ({"values": torch.ones(k, dtype=torch.float64), "indices": good["indices"]}, "expected"),
        ({"indices": good["indices"], "values": torch.ones(k)}, "expected"),
    ]:
        refused(bad, c, P, match)


def test_topk_wire_checks_refuse_wrong_dtype_shape_and_non_finite_values():
    c = parse_compression("topk:fraction=0.01")
    values, indices = torch.ones(10), torch.arange(10, dtype=torch.int32)
    refused({"values": values, "indices": indices.long()}, c, P, "'indices' is int64 .* expected int32")
    refused({"values": values.half(), "indices": indices}, c, P, "'values' is float16 .* expected float32")
    refused({"values": values[:9], "indices": indices[:9]}, c, P, r"expected float32 \(10,\)")
    refused({"values": values, "indices": indices[:9]}, c, P, r"expected int32 \(10,\)")
    refused({"values": torch.tensor([1.0] * 9 + [float("inf")]), "indices": indices}, c, P, "NaN or infinite")
