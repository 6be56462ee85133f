"""Compression: top-k, int8, float16, payload sizes, error feedback and CHOCO-Gossip consensus."""

import math

import numpy as np
import pytest
import torch

from p2pfl.errors import UserError
from p2pfl.gossip.compression import (
    ChocoNode,
    ChocoStack,
    Compression,
    compress,
    decode,
    densify,
    dequantize_int8,
    encode,
    encoded_bytes,
    from_float16,
    mix_compressed,
    parse_compression,
    quantize_int8,
    to_float16,
    topk,
    topk_count,
)
from p2pfl.gossip.mixing import mixing_matrix


def _ring(n: int) -> np.ndarray:
    return mixing_matrix(n, np.array([(i, (i + 1) % n) for i in range(n)]))


def test_parse_valid_specs_and_defaults():
    c = parse_compression("topk:fraction=0.01,gamma=0.5")
    assert (c.name, c.fraction, c.gamma, c.choco) == ("topk", 0.01, 0.5, True)
    assert parse_compression("topk:fraction=0.1").gamma == 0.1  # top-k is always CHOCO
    assert parse_compression("int8") == Compression("int8", chunk=256, rounding="nearest")
    assert not parse_compression("int8").choco and not parse_compression("float16").choco
    assert parse_compression("int8:chunk=0,rounding=stochastic,gamma=1").choco
    assert parse_compression("none") == Compression()
    for spec in ["none", "topk:fraction=0.01,gamma=0.5", "int8:chunk=64,rounding=stochastic",
                 "int8:chunk=0,rounding=nearest,gamma=0.8", "float16", "float16:gamma=1"]:
        assert str(parse_compression(spec)) == spec
        assert parse_compression(str(parse_compression(spec))) == parse_compression(spec)


@pytest.mark.parametrize("spec,message", [
    ("zip", "unknown compression 'zip'; choose one of float16, int8, none, topk"),
    ("topk:fraction=0", "topk: fraction must be in (0, 1], got 0.0"),
    ("topk:fraction=1.5", "topk: fraction must be in (0, 1], got 1.5"),
    ("topk:fraction=a", "topk: fraction must be a number, got 'a'"),
    ("topk:fraction=0.1,gamma=0", "topk: gamma must be in (0, 1], got 0.0"),
    ("topk:k=3", "compression topk does not take k (takes: fraction, gamma)"),
    ("int8:chunk=-1", "int8: chunk must be a non-negative integer (0: one scale), got -1"),
    ("int8:chunk=2.5", "int8: chunk must be a non-negative integer (0: one scale), got '2.5'"),
    ("int8:rounding=up", "int8: rounding must be nearest or stochastic, got 'up'"),
    ("float16:chunk=3", "compression float16 does not take chunk (takes: gamma)"),
    ("none:gamma=1", "compression none does not take gamma (takes: none)"),
    ("topk:fraction", "'topk:fraction': parameter 'fraction' is not of the form key=value"),
])
def test_parse_rejects_bad_specs_with_one_clear_message(spec, message):
    with pytest.raises(UserError) as err:
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


def test_float16_round_trip_error_bound_and_saturation():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(10_000, generator=g) * torch.logspace(-6, 4, 10_000)
    back = from_float16(to_float16(v))
    # float16 keeps 11 significant bits: relative error <= 2^-11; below 2^-14 subnormals, <= 2^-25
    assert ((back - v).abs() <= 2.0**-11 * v.abs() + 2.0**-25).all()
    big = from_float16(to_float16(torch.tensor([1e6, -1e9, 65504.0])))
    assert big.tolist() == [65504.0, -65504.0, 65504.0]


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


@pytest.mark.parametrize("spec", ["none", "topk:fraction=0.01", "topk:fraction=0.3", "int8:chunk=256",
                                  "int8:chunk=0", "int8:chunk=7", "float16"])
@pytest.mark.parametrize("p", [1, 10, 1000, 1001])
def test_encoded_bytes_is_the_size_of_the_real_payload(spec, p):
    c = parse_compression(spec)
    v = torch.randn(p)
    e = encode(c, v)
    assert e.nbytes() == encoded_bytes(c, p)
    assert encode(c, torch.randn(4, p)).nbytes() == 4 * encoded_bytes(c, p)
    assert decode(e).shape == (p,) and decode(e).dtype == torch.float32


def test_encoded_bytes_known_values():
    assert encoded_bytes(parse_compression("none"), 1000) == 4000
    assert encoded_bytes(parse_compression("float16"), 1000) == 2000
    assert encoded_bytes(parse_compression("int8:chunk=256"), 1000) == 1000 + 4 * 4
    assert encoded_bytes(parse_compression("int8:chunk=0"), 1000) == 1004
    assert encoded_bytes(parse_compression("topk:fraction=0.01"), 1000) == 10 * (4 + 4)


def test_error_feedback_sends_the_residual_until_the_copy_is_exact():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(100, generator=g)
    node = ChocoNode(parse_compression("topk:fraction=0.1"), torch.zeros(100))
    sent = torch.zeros(100)
    norms = []
    for _ in range(10):
        q = decode(node.message(x))  # x is held fixed: each round sends the largest leftovers
        sent += q
        assert torch.equal(sent, node.x_hat)  # the public copy is the sum of what was sent
        norms.append(float(torch.linalg.vector_norm(x - node.x_hat)))
    assert all(b < a for a, b in zip(norms, norms[1:], strict=False) if a > 0)
    assert torch.equal(node.x_hat, x)  # 10 rounds of 10% sent every coordinate once, exactly


def test_choco_topk_10_percent_on_a_ring_reaches_the_average():
    n, p = 16, 100
    w = _ring(n)
    x = torch.randn(n, p, generator=torch.Generator().manual_seed(5))
    average = x.mean(dim=0)
    start = torch.linalg.vector_norm(x - average)
    state = ChocoStack(parse_compression("topk:fraction=0.1,gamma=0.2"), torch.zeros(n, p))
    for _ in range(600):
        x = state.step(x, w)
    assert torch.linalg.vector_norm(x - average) < start / 100
    assert torch.allclose(x.mean(dim=0), average, atol=1e-5)  # W doubly stochastic: mean preserved


def test_choco_without_error_feedback_loses_mass_but_choco_does_not():
    # Sending top-k of the model itself (no x_hat) and averaging does not preserve the mean.
    n, p = 8, 50
    x = torch.randn(n, p, generator=torch.Generator().manual_seed(6)) + 3.0
    c = parse_compression("topk:fraction=0.1")
    naive = x.clone()
    wt = torch.from_numpy(_ring(n).toarray()).float()
    for _ in range(100):
        naive = wt @ compress(c, naive)
    assert not torch.allclose(naive.mean(dim=0), x.mean(dim=0), atol=0.1)


def test_choco_node_driver_equals_the_stacked_simulator():
    n, p = 6, 40
    w = _ring(n)
    c = parse_compression("topk:fraction=0.25,gamma=0.3")
    x0 = torch.randn(n, p, generator=torch.Generator().manual_seed(7))
    stack = ChocoStack(c, torch.zeros(n, p))
    nodes = [ChocoNode(c, torch.zeros(p)) for _ in range(n)]
    xs, xn = x0.clone(), [x0[i].clone() for i in range(n)]
    for _ in range(30):
        xs = stack.step(xs, w)
        payloads = [node.message(xn[i]) for i, node in enumerate(nodes)]
        for i, node in enumerate(nodes):
            for j in ((i - 1) % n, (i + 1) % n):
                node.receive(str(j), payloads[j])
        xn = [node.mix(xn[i], {str(j): w[i, j] for j in ((i - 1) % n, (i + 1) % n)})
              for i, node in enumerate(nodes)]
    assert torch.allclose(torch.stack(xn), xs, atol=1e-5)
    assert torch.allclose(torch.stack([nd.x_hat for nd in nodes]), stack.x_hat, atol=1e-5)


def test_direct_compressed_mixing_keeps_the_own_model_exact():
    n, p = 10, 300
    w = _ring(n)
    x = torch.randn(n, p, generator=torch.Generator().manual_seed(8))
    exact = torch.from_numpy(w.toarray()).float() @ x
    out = mix_compressed(x, w, parse_compression("float16"))
    assert torch.allclose(out, exact, atol=1e-3)
    out = mix_compressed(x, w, parse_compression("int8:chunk=0"))
    _, scales = quantize_int8(x, 0)
    assert ((out - exact).abs() <= scales.max() / 2 + 1e-6).all()
    # a node whose neighbours send exactly what they hold, with no compression, is plain gossip
    assert torch.allclose(mix_compressed(x, w, Compression()), exact, atol=1e-6)


def test_choco_requires_gamma():
    with pytest.raises(ValueError, match="direct, not CHOCO"):
        ChocoStack(parse_compression("int8"), torch.zeros(2, 3))


def test_direct_mixing_refuses_a_choco_compressor():
    with pytest.raises(ValueError, match="runs through CHOCO"):
        mix_compressed(torch.zeros(4, 3), _ring(4), parse_compression("topk:fraction=0.5"))
