"""Simulator robustness: attacks, robust aggregation, compression bytes, faults, DP.

Each attack's own tests are in tests/attacks/.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from p2pfl.cli import main
from p2pfl.gossip.compression import encoded_bytes, parse_compression
from p2pfl.learning.privacy import epsilon
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.attacks import ATTACKS, byzantine_nodes
from p2pfl.sim.report import summary
from p2pfl.sim.runner import prepare, simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


DIGITS = dict(dataset="digits", nodes=16, topology="exponential", rounds=50, eval_every=50, seed=1)


def final(**kw) -> float:
    return simulate(SimConfig(**{**DIGITS, **kw})).main.final["mean_local_accuracy"]


def test_attackers_are_chosen_by_seed_and_left_out_of_metrics():
    bad = byzantine_nodes(16, 0.2, seed=1)
    assert bad.sum() == 3
    assert np.array_equal(bad, byzantine_nodes(16, 0.2, seed=1))
    result = simulate(SimConfig(**{**DIGITS, "rounds": 2, "attack": "gaussian:0.2"}))
    assert result.main.byzantine == [int(k) for k in np.flatnonzero(bad)]
    assert summary(result)["byzantine_nodes"] == result.main.byzantine


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_runs_in_both_engines(name):
    attack = f"{name}:0.2"
    cfg = dict(DIGITS, nodes=8, rounds=2, aggregator="median")
    clean = simulate(SimConfig(**cfg)).main
    a = simulate(SimConfig(**cfg, attack=attack)).main
    b = simulate(SimConfig(**cfg, attack=attack, engine="reference")).main
    assert (a.final_params - b.final_params).abs().max().item() < 1e-5  # the same run
    honest = [k for k in range(8) if k not in a.byzantine]
    assert a.byzantine and (a.final_params - clean.final_params)[honest].abs().max().item() > 1e-3


def test_topk_bytes_are_counted_from_encoded_messages():
    p = 2410  # digits MLP, 32 hidden
    dense = simulate(SimConfig(**{**DIGITS, "rounds": 3})).main.bytes_sent_per_node
    sparse = simulate(SimConfig(**{**DIGITS, "rounds": 3, "compression": "topk:fraction=0.01"}))
    messages_per_node = 7 * 3  # degree 7, 3 rounds
    assert dense == messages_per_node * 4 * p
    assert sparse.main.bytes_sent_per_node == messages_per_node * encoded_bytes(parse_compression("topk"), p)
    assert 45 < dense / sparse.main.bytes_sent_per_node < 55  # 8 bytes x 1% of values vs 4 bytes x all
    assert summary(sparse)["bytes_sent_per_node"] == sparse.main.bytes_sent_per_node


def test_int8_sends_a_quarter_and_still_learns():
    result = simulate(SimConfig(**{**DIGITS, "compression": "int8"}))
    assert result.main.bytes_sent_per_node == 50 * 7 * (2410 + 4 * 10)
    assert result.main.final["mean_local_accuracy"] > 0.9


def test_thirty_percent_dropout_still_converges():
    clean = final()
    churn = simulate(SimConfig(**{**DIGITS, "dropout": 0.3}))
    assert churn.main.final["mean_local_accuracy"] > clean - 0.03
    assert churn.main.final["consensus_distance"] < 0.1
    # offline nodes neither send nor receive: fewer bytes than the full run
    assert churn.main.bytes_sent_per_node < 0.6 * 50 * 7 * 4 * 2410


def test_stragglers_and_message_loss_are_seeded():
    cfg = SimConfig(**{**DIGITS, "rounds": 5, "stragglers": 0.2, "message_loss": 0.2})
    a, b = simulate(cfg).main, simulate(cfg).main
    assert a.rows == b.rows
    assert a.bytes_sent_per_node == 5 * 7 * 4 * 2410  # late and lost messages were still sent
    assert a.rows[-1]["consensus_distance"] > 0


def test_dp_reports_epsilon_and_more_noise_spends_less():
    low = simulate(SimConfig(**{**DIGITS, "rounds": 5, "dp": "noise=0.8,clip=1.0"}))
    high = simulate(SimConfig(**{**DIGITS, "rounds": 5, "dp": "noise=2.0,clip=1.0,delta=1e-6"}))
    assert 0 < high.main.epsilon < low.main.epsilon
    out = summary(high)
    assert out["epsilon"] == high.main.epsilon and out["delta"] == 1e-6
    assert "epsilon" in high.main.rows[-1]


def test_dp_epsilon_is_the_accountant_of_the_steps_each_node_took():
    cfg = SimConfig(**{**DIGITS, "nodes": 4, "rounds": 3, "local_steps": 2, "dp": "noise=1.0,clip=1.0"})
    _, data, _ = prepare(cfg)
    # the least-protected node: the smallest one samples its rows at the highest rate
    expected = max(epsilon(1.0, min(1.0, 32 / int(n)), 3 * 2, 1e-5) for n in data.sizes)
    for engine in ("vectorized", "reference"):
        assert simulate(replace(cfg, engine=engine)).main.epsilon == pytest.approx(expected, rel=1e-12)


DP_RUN = dict(DIGITS, nodes=4, rounds=2)


def _dp_params(engine: str, dp: str | None) -> torch.Tensor:
    return simulate(SimConfig(**DP_RUN, engine=engine, dp=dp)).main.final_params


@pytest.mark.parametrize("engine", ["vectorized", "reference"])
def test_dp_sgd_in_each_engine_clips_and_adds_noise(engine):
    plain = _dp_params(engine, None)
    # no clipping bites and negligible noise: DP-SGD is the plain SGD step
    assert (_dp_params(engine, "noise=1e-12,clip=1e3") - plain).abs().max().item() < 1e-6
    # per-example clipping changes the steps, identically in both engines
    clipped = _dp_params(engine, "noise=1e-12,clip=0.01")
    assert (clipped - plain).abs().max().item() > 1e-3
    assert (clipped - _dp_params("reference", "noise=1e-12,clip=0.01")).abs().max().item() < 1e-5
    # Gaussian noise of std noise * clip / batch per step: twice the noise, twice the spread
    one = (_dp_params(engine, "noise=1.0,clip=10") - plain).std().item()
    two = (_dp_params(engine, "noise=2.0,clip=10") - plain).std().item()
    assert 0.01 < one and 1.6 < two / one < 2.4


def test_defaults_keep_the_plain_run():
    a = simulate(SimConfig(**{**DIGITS, "rounds": 3}))
    b = simulate(SimConfig(**{**DIGITS, "rounds": 3, "aggregator": "mean", "compression": "none",
                              "dropout": 0.0}))
    assert a.main.rows == b.main.rows
    assert "epsilon" not in summary(a)


def test_robust_aggregation_agrees_with_mean_when_nobody_attacks():
    a = simulate(SimConfig(**{**DIGITS, "rounds": 3, "aggregator": "clipped:tau=1e9"})).main.final
    b = simulate(SimConfig(**{**DIGITS, "rounds": 3})).main.final
    assert a["mean_local_accuracy"] == pytest.approx(b["mean_local_accuracy"], abs=0.01)


@pytest.mark.parametrize("extra, message", [
    (["--aggregator", "trimmed_mean:b=4"], "needs at least 9 models per neighbourhood"),
    (["--attack", "poison:0.2"], "unknown attack 'poison'"),
    (["--attack", "sign_flip:1.5"], "fraction must be in [0, 1)"),
    (["--dp", "noise=0,clip=1"], "an epsilon target with no noise"),
    (["--dp", "clip=1"], "--dp needs noise"),
    (["--dropout", "1"], "--dropout must be a probability"),
    (["--compression", "zip"], "unknown compression 'zip'"),
    (["--compression", "topk", "--aggregator", "median"], "cannot be combined"),
])
def test_bad_robustness_config_is_one_line(extra, message, capsys):
    assert main(["simulate", "--rounds", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("p2pfl: error: ")


def test_cli_json_has_bytes_and_epsilon(capsys):
    assert main(["simulate", "--nodes", "4", "--rounds", "2", "--dp", "noise=1,clip=1",
                 "--compression", "float16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bytes_sent_per_node"] == pytest.approx(out["mb_sent_per_node"] * 1e6)
    assert out["epsilon"] > 0 and out["delta"] == 1e-5
    assert out["config"]["compression"] == "float16"


def test_engines_agree_on_a_robust_compressed_faulty_attacked_run():
    cfg = dict(DIGITS, nodes=8, rounds=4, eval_every=4, aggregator="trimmed_mean:b=1", compression="float16",
               dropout=0.2, message_loss=0.1, attack="sign_flip:0.25")
    vec = simulate(SimConfig(**cfg)).main
    ref = simulate(SimConfig(**cfg, engine="reference")).main
    assert vec.bytes_sent_per_node == ref.bytes_sent_per_node
    assert vec.final["mean_local_accuracy"] == pytest.approx(ref.final["mean_local_accuracy"], abs=0.01)
    assert vec.final["consensus_distance"] == pytest.approx(ref.final["consensus_distance"], rel=1e-3)
