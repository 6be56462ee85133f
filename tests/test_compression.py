"""Compression facade: spec parsing, the registry, payload sizes, direct mixing and CHOCO-Gossip.

What is particular to one compressor is tested in tests/compressions/test_comp_<name>.py.
"""

import copy
import pickle

import numpy as np
import pytest
import torch

from p2pfl.gossip.compression import (
    COMPRESSIONS,
    ChocoNode,
    ChocoStack,
    Compression,
    compress,
    decode,
    encode,
    encoded_bytes,
    mix_compressed,
    parse_compression,
    quantize_int8,
)
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import mixing_matrix


def _ring(n: int) -> np.ndarray:
    return mixing_matrix(n, np.array([(i, (i + 1) % n) for i in range(n)]))


def test_specs_print_back_as_themselves_for_every_member():
    # member-specific parsing: tests/compressions/test_comp_*.py
    for spec in ["none", "topk:fraction=0.01,gamma=0.5", "int8:chunk=64,rounding=stochastic",
                 "int8:chunk=0,rounding=nearest,gamma=0.8", "float16", "float16:gamma=1"]:
        assert str(parse_compression(spec)) == spec
        assert parse_compression(str(parse_compression(spec))) == parse_compression(spec)


def test_registry_lists_every_member_with_its_help():
    assert COMPRESSIONS.names() == ("float16", "int8", "none", "topk")
    for member in COMPRESSIONS:
        assert member.summary and all(p.help for p in member.params)
        assert parse_compression(member.name).member is member


def test_constructor_checks_like_the_parser():
    assert Compression("topk", fraction=0.1) == parse_compression("topk:fraction=0.1")
    assert Compression("int8", gamma=0.5, chunk=0).chunk == 0
    with pytest.raises(GossipSettingError, match=r"compression none does not take gamma \(takes: none\)"):
        Compression("none", gamma=1.0)
    with pytest.raises(GossipSettingError, match=r"float16 does not take fraction \(takes: gamma\)"):
        Compression("float16", fraction=0.1)
    with pytest.raises(GossipSettingError, match="topk: fraction must be in"):
        Compression("topk", fraction=2)
    with pytest.raises(AttributeError, match="compression float16 has no parameter 'chunk'"):
        _ = parse_compression("float16").chunk


def test_a_compression_is_a_hashable_value_that_survives_pickling():
    c = parse_compression("int8:chunk=7,gamma=0.5")
    back = pickle.loads(pickle.dumps(c))
    assert back == c and hash(back) == hash(c) and back.chunk == 7 and str(back) == str(c)
    assert copy.deepcopy(c) == c and len({c, back, parse_compression("int8")}) == 2


@pytest.mark.parametrize("spec,message", [
    ("zip", "unknown compression 'zip'; choose one of float16, int8, none, topk"),
    (" zip :a=1", "unknown compression 'zip'; choose one of float16, int8, none, topk"),
    ("topk:fraction", "'topk:fraction': parameter 'fraction' is not of the form key=value"),
    ("int8:chunk=1,chunk=2", "'int8:chunk=1,chunk=2': parameter chunk given twice"),
])
def test_parse_rejects_bad_specs_with_one_clear_message(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_compression(spec)
    assert str(err.value) == message


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
