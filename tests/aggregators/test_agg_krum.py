"""The krum aggregator: Krum and Multi-Krum (Blanchard et al. 2017) per neighbourhood."""

import json

import pytest
import torch

from p2pfl.cli import main
from p2pfl.errors import UserError
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import AGGREGATORS, aggregate, aggregate_stacked, parse_aggregator
from p2pfl.settings.load import node_settings

KRUM = parse_aggregator("krum:f=1")


def test_registered_parsed_and_round_tripped():
    assert "krum" in AGGREGATORS.names()
    agg = parse_aggregator("krum:f=2,m=3")
    assert (agg.f, agg.m) == (2, 3) and parse_aggregator(str(agg)) == agg
    assert agg.min_models() == 7 and agg.tolerates() == 2 and not agg.is_linear
    assert parse_aggregator("krum:f=1,m=4").min_models() == 5  # m + f


@pytest.mark.parametrize("spec,message", [
    ("krum:f=0", "krum: f must be a positive integer, got 0"),
    ("krum:m=x", "krum: m must be a positive integer, got 'x'"),
    ("krum:b=1", "aggregator krum does not take b (takes: f, m)"),
])
def test_bad_parameters_are_one_clear_line(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_aggregator(spec)
    assert str(err.value) == message


def _cluster(k: int, seed: int) -> torch.Tensor:
    return 0.1 * torch.randn(k, 8, generator=torch.Generator().manual_seed(seed))


def test_krum_keeps_a_clustered_model_and_never_the_outlier():
    honest = _cluster(5, 1)
    models = torch.cat([honest[:1], torch.full((1, 8), 50.0), honest[1:]])  # own model, then an attacker
    out = aggregate(models, KRUM)
    assert any(torch.equal(out, h) for h in honest)
    # the score by hand: squared distances to the k - f - 2 = 3 nearest others, lowest wins
    d = torch.cdist(models, models).square() + torch.diag(torch.full((6,), float("inf")))
    score = torch.sort(d, dim=1).values[:, :3].sum(dim=1)
    assert torch.equal(out, models[int(score.argmin())])


def test_multi_krum_averages_the_m_best_and_drops_the_attackers():
    honest = _cluster(5, 2)
    models = torch.cat([honest, torch.full((2, 8), -30.0)])
    out = aggregate(models, parse_aggregator("krum:f=2,m=5"))
    assert torch.allclose(out, honest.mean(dim=0), atol=1e-6)
    mean = aggregate(models, parse_aggregator("mean"))
    assert mean.abs().max() > 5  # averaging is dragged away; Multi-Krum is not


def test_mixing_weights_are_ignored():
    models = _cluster(5, 3)
    assert torch.equal(aggregate(models, KRUM), aggregate(models, KRUM, torch.tensor([0.9, 0.1, 0, 0, 0])))


def test_batched_with_masked_slots_equals_each_neighbourhood_alone():
    g = torch.Generator().manual_seed(4)
    stack = torch.randn(3, 7, 5, generator=g)
    mask = torch.tensor([[True] * 7, [True, True, True, True, True, False, False],
                         [True, False, True, True, True, False, True]])
    stack[~mask] = 1e30  # whatever sits in an empty slot is ignored
    out = aggregate_stacked(stack, KRUM, None, mask)
    for i in range(3):
        assert torch.equal(out[i], aggregate(stack[i][mask[i]], KRUM)), i


def test_too_few_models_keep_the_own_model_or_are_an_error():
    models = _cluster(4, 5)  # krum:f=1 needs 5
    assert torch.equal(aggregate(models, KRUM, keep_short=True), models[0])
    with pytest.raises(GossipSettingError, match="krum with f=1, m=1 needs at least 5 models"):
        aggregate(models, KRUM)


def test_simulate_runs_with_krum(capsys):
    args = ["simulate", "--dataset", "breast_cancer", "--model", "logreg", "--nodes", "8", "--topology",
            "exponential", "--rounds", "3", "--local-steps", "1", "--eval-every", "3",
            "--aggregator", "krum:f=1", "--attack", "sign_flip:0.2", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["aggregator"] == "krum:f=1" and summary["final"]["mean_local_accuracy"] > 0.8


def test_node_config_accepts_krum_and_rejects_bad_parameters(write_config):
    path = write_config(('aggregator = "mean"', 'aggregator = "krum:f=1,m=2"'))
    assert node_settings(path).gossip.aggregator == "krum:f=1,m=2"
    path = write_config(('aggregator = "mean"', 'aggregator = "krum:f=-1"'))
    with pytest.raises(UserError, match="gossip.aggregator is not valid: krum: f must be"):
        node_settings(path)
