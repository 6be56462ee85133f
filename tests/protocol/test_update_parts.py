"""The parts of a node's update handling: Encoder, Validator, ChocoSession and Combiner."""

import pytest
import torch

from p2pfl.gossip.compression import ChocoNode, Encoded, decode, parse_compression
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import parse_aggregator
from p2pfl.learning.params import fingerprint, flatten
from p2pfl.protocol.codec import decode as decode_update
from p2pfl.protocol.codec import encode as encode_update
from p2pfl.protocol.compressed import FULL
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import generate_key
from p2pfl.protocol.messages import InvalidMessage
from p2pfl.protocol.payload import FULL_EVERY, UpdateFormat
from p2pfl.protocol.rounds import Aggregate

KEY = generate_key()
CONSORTIUM = consortium_of({"gossip": {"compression": "topk"}})
SPECS = [("w", (3, 4), torch.float32), ("b", (4,), torch.float32)]
FP = fingerprint(SPECS)
MEMBERS = ["me", "a", "b"]
MEAN = parse_aggregator("mean")


def _params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) for name, shape, _ in SPECS}


def _format(spec: str, restarted: bool = False, initial: torch.Tensor | None = None) -> UpdateFormat:
    initial = torch.zeros(16) if initial is None else initial
    return UpdateFormat.build(SPECS, FP, parse_compression(spec), MEAN, initial, MEMBERS,
                              restarted=restarted, static=True)


def _arrival(tensors, encoding, fp=FP):
    return decode_update(bytes(encode_update(KEY, consortium=CONSORTIUM, round=0, fingerprint=fp,
                                             num_samples=1, weight=1.0, tensors=tensors, encoding=encoding)))


def test_without_compression_updates_are_dense_and_checked_against_the_model():
    f = _format("none")
    params = _params(0)
    tensors, encoding = f.encoder.encode(3, params)
    assert encoding == "dense" and tensors is params and f.choco is None
    got = f.validator.check(_arrival(tensors, encoding))
    assert list(got) == ["w", "b"] and torch.equal(got["w"], params["w"])
    with pytest.raises(InvalidMessage, match="expects dense models"):
        f.validator.check(_arrival({"values": flatten(params)}, "float16"))


def test_direct_compression_round_trips_into_the_models_tensors():
    f = _format("float16")
    params = _params(1)
    tensors, encoding = f.encoder.encode(0, params)
    assert encoding == "float16" and list(tensors) == ["values"] and tensors["values"].dtype == torch.float16
    got = f.validator.check(_arrival(tensors, encoding))
    assert list(got) == ["w", "b"] and got["w"].shape == (3, 4)
    assert torch.allclose(flatten(got), flatten(params), atol=1e-2)
    with pytest.raises(InvalidMessage, match="different architecture"):
        f.validator.check(_arrival(tensors, encoding, fp="b" * 64))


def test_choco_sends_differences_and_a_full_copy_after_a_restart_and_every_full_every_rounds():
    f = _format("topk:fraction=0.25,gamma=0.5")
    reference = ChocoNode(parse_compression("topk:fraction=0.25,gamma=0.5"), torch.zeros(16))
    kinds = []
    for r in range(2 * FULL_EVERY + 1):
        params = _params(r)
        tensors, encoding = f.encoder.encode(r, params)
        q = reference.message(flatten(params))  # the own copy advances in every round
        assert torch.equal(f.choco.x_hat, reference.x_hat)
        if encoding == FULL:
            assert torch.equal(tensors["values"], reference.x_hat)
        else:
            assert encoding == "topk:fraction=0.25,gamma=0.5" and torch.equal(tensors["values"], q.values)
        kinds.append(encoding == FULL)
    assert [r for r, full in enumerate(kinds) if full] == [FULL_EVERY, 2 * FULL_EVERY]
    restarted = _format("topk:fraction=0.25,gamma=0.5", restarted=True)
    assert restarted.encoder.encode(5, _params(0))[1] == FULL
    assert restarted.encoder.encode(6, _params(0))[1] != FULL
    assert restarted.choco.desynced == set(MEMBERS)


def test_choco_session_distrusts_a_sender_until_its_full_copy_arrives():
    c = "topk:fraction=0.5,gamma=0.5"
    f = _format(c)
    own = _params(0)
    q = Encoded("none", 16, torch.ones(16))  # a's top half: ones at indices 0..7

    def arrive(encoding, vector):
        top = {"values": vector[:8], "indices": torch.arange(8, dtype=torch.int32)}
        return f.validator.check(_arrival({"values": vector} if encoding == FULL else top, encoding))

    # round 0: a sends a difference, b is missing
    state_a = arrive(c, q.values)
    assert list(state_a) == [c] and state_a[c].shape == (16,)
    action = Aggregate(0, ("a",), (0.5, 0.5), (own, state_a), missing=("b",))
    new, combined = f.combiner.combine(action)
    assert combined and f.choco.desynced == {"b"}
    hat_a = torch.cat([torch.ones(8), torch.zeros(8)])
    assert torch.equal(f.choco.node.copies["a"], hat_a)
    expected = flatten(own) + 0.5 * 0.5 * (hat_a - f.choco.x_hat)
    assert torch.allclose(flatten(new), expected)
    # round 1: b's difference is ignored (its copy is off) and it gets no weight
    action = Aggregate(1, ("a", "b"), (0.4, 0.3, 0.3), (own, arrive(c, q.values), arrive(c, q.values)))
    new, _ = f.combiner.combine(action)
    assert "b" not in f.choco.node.copies and f.choco.desynced == {"b"}
    assert torch.allclose(flatten(new), flatten(own) + 0.5 * 0.3 * (2 * hat_a - f.choco.x_hat))
    # round 2: b's full copy resets its copy and b counts again
    full_b = torch.full((16,), 2.0)
    action = Aggregate(2, ("b",), (0.5, 0.5), (own, arrive(FULL, full_b)))
    new, _ = f.combiner.combine(action)
    assert not f.choco.desynced and torch.equal(f.choco.node.copies["b"], full_b)
    assert torch.allclose(flatten(new), flatten(own) + 0.5 * 0.5 * (full_b - f.choco.x_hat))


def test_without_choco_the_combiner_applies_the_aggregator():
    f = _format("int8")
    a, b = _params(1), _params(2)
    new, combined = f.combiner.combine(Aggregate(0, ("a",), (0.25, 0.75), (a, b)))
    assert combined and torch.allclose(new["w"], 0.25 * a["w"] + 0.75 * b["w"])
    trimmed = UpdateFormat.build(SPECS, FP, parse_compression("none"), parse_aggregator("trimmed_mean:b=1"),
                                 torch.zeros(16), MEMBERS, restarted=False, static=False)
    new, combined = trimmed.combiner.combine(Aggregate(0, ("a",), (0.5, 0.5), (a, b)))
    assert not combined and all(torch.equal(new[k], a[k]) for k in a)  # 2 are too few to trim


def test_choco_needs_a_static_topology_and_the_mean():
    with pytest.raises(GossipSettingError, match="needs a static topology"):
        UpdateFormat.build(SPECS, FP, parse_compression("topk"), MEAN, torch.zeros(16), MEMBERS,
                           restarted=False, static=False)
    with pytest.raises(GossipSettingError, match='gossip.aggregator = "mean"'):
        UpdateFormat.build(SPECS, FP, parse_compression("int8:gamma=0.5"), parse_aggregator("median"),
                           torch.zeros(16), MEMBERS, restarted=False, static=True)
    assert UpdateFormat.build(SPECS, FP, parse_compression("int8"), parse_aggregator("median"),
                              torch.zeros(16), MEMBERS, restarted=False, static=False).choco is None


def test_two_nodes_choco_over_the_wire_matches_the_gossip_math():
    c = parse_compression("int8:chunk=4,gamma=0.5")
    nodes = [_format(str(c)), _format(str(c))]
    models = [_params(10), _params(11)]
    ref = [ChocoNode(c, torch.zeros(16)), ChocoNode(c, torch.zeros(16))]
    ref_x = [flatten(m) for m in models]
    for r in range(3):
        sent = [n.encoder.encode(r, m) for n, m in zip(nodes, models, strict=True)]
        qs = [rn.message(x) for rn, x in zip(ref, ref_x, strict=True)]
        arrivals = [nodes[i].validator.check(_arrival(*sent[1 - i])) for i in range(2)]
        for i in range(2):
            action = Aggregate(r, ("peer",), (0.5, 0.5), (models[i], arrivals[i]))
            models[i], _ = nodes[i].combiner.combine(action)
            ref[i].receive("peer", Encoded("none", 16, decode(qs[1 - i])))
            ref_x[i] = ref[i].mix(ref_x[i], {"peer": 0.5})
        for i in range(2):
            assert torch.equal(nodes[i].choco.x_hat, ref[i].x_hat)
            assert torch.allclose(flatten(models[i]), ref_x[i], atol=1e-6)
    assert not torch.allclose(flatten(models[0]), flatten(_params(10)))  # the models did mix
