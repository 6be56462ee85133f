"""The geomedian aggregator: weighted geometric median by smoothed Weiszfeld iterations (RFA)."""

import json

import pytest
import torch

from p2pfl.cli import main
from p2pfl.errors import UserError
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import AGGREGATORS, aggregate, aggregate_stacked, parse_aggregator
from p2pfl.settings.load import node_settings

GM = parse_aggregator("geomedian")


def test_registered_parsed_and_round_tripped():
    assert "geomedian" in AGGREGATORS.names()
    assert GM.iters == 10 and GM.eps == 1e-6 and GM.ftol == 1e-6
    agg = parse_aggregator("geomedian:iters=3,eps=1e-4")
    assert (agg.iters, agg.eps) == (3, 1e-4) and parse_aggregator(str(agg)) == agg
    assert not agg.is_linear and agg.min_models() == 1 and agg.tolerates() == 0


@pytest.mark.parametrize("spec,message", [
    ("geomedian:iters=0", "geomedian: iters must be a positive integer, got 0"),
    ("geomedian:iters=2.5", "geomedian: iters must be a positive integer, got '2.5'"),
    ("geomedian:eps=0", "geomedian: eps must be a positive number, got 0.0"),
    ("geomedian:ftol=-1", "geomedian: ftol must be a non-negative number, got -1.0"),
    ("geomedian:b=1", "aggregator geomedian does not take b (takes: iters, eps, ftol)"),
])
def test_bad_parameters_are_one_clear_line(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_aggregator(spec)
    assert str(err.value) == message


def test_collinear_points_give_the_middle_one():
    u = torch.randn(6, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0])
    out = aggregate(t[:, None] * u, GM)
    assert torch.allclose(out, 2.0 * u, atol=1e-4)  # the 1-D median along the line, not the mean 4.8
    # an equilateral triangle: the Fermat point is the centroid
    tri = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 3**0.5 / 2]])
    assert torch.allclose(aggregate(tri, GM), tri.mean(dim=0), atol=1e-5)


def test_one_outlier_far_away_barely_moves_it():
    g = torch.Generator().manual_seed(2)
    honest = torch.randn(9, 20, generator=g)
    clean = aggregate(honest, GM)
    spread = torch.linalg.vector_norm(honest - clean, dim=1).mean()  # about 4
    moved = {}
    for far in (1e2, 1e6):
        attacked = aggregate(torch.cat([honest, torch.full((1, 20), far)]), GM)
        moved[far] = attacked
        assert torch.linalg.vector_norm(attacked - clean) < 0.15 * spread
    # bounded influence: 10,000 times farther away moves it hardly more
    assert torch.linalg.vector_norm(moved[1e6] - moved[1e2]) < 0.1
    mean = parse_aggregator("mean")
    assert torch.linalg.vector_norm(aggregate(torch.cat([honest, torch.full((1, 20), 1e6)]), mean)) > 1e5


def test_two_points_give_their_mean():
    pts = torch.randn(2, 7, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(aggregate(pts, GM), pts.mean(dim=0), atol=1e-6)


def test_mixing_weights_are_respected():
    pts = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    # a point holding more than half the weight is the weighted geometric median
    heavy = aggregate(pts, parse_aggregator("geomedian:iters=100"), torch.tensor([0.2, 0.6, 0.2]))
    assert torch.allclose(heavy, pts[1], atol=1e-3)
    uniform = aggregate(pts, GM)
    assert torch.linalg.vector_norm(uniform - pts[1]) > 2.0
    # weights are re-normalised: scaling them changes nothing
    assert torch.allclose(aggregate(pts, GM, torch.tensor([1.0, 2.0, 3.0])),
                          aggregate(pts, GM, torch.tensor([10.0, 20.0, 30.0])), atol=1e-6)


def test_batched_with_masked_slots_equals_each_neighbourhood_alone():
    g = torch.Generator().manual_seed(4)
    stack = torch.randn(3, 6, 5, generator=g)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False],
                         [True, False, True, True, False, True]])
    stack[~mask] = 1e30  # whatever sits in an empty slot is ignored
    weight = torch.rand(3, 6, generator=g)
    out = aggregate_stacked(stack, GM, weight, mask)
    for i in range(3):
        alone = aggregate(stack[i][mask[i]], GM, weight[i][mask[i]])
        assert torch.allclose(out[i], alone, atol=1e-5), i
    assert torch.isfinite(out).all()


def test_simulate_runs_with_geomedian(capsys):
    args = ["simulate", "--dataset", "breast_cancer", "--model", "logreg", "--nodes", "6", "--topology",
            "ring", "--rounds", "3", "--local-steps", "1", "--eval-every", "3", "--aggregator", "geomedian",
            "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["aggregator"] == "geomedian"
    assert 0.5 < summary["final"]["mean_local_accuracy"] <= 1


def test_node_config_accepts_geomedian_and_rejects_bad_parameters(write_config):
    path = write_config(('aggregator = "mean"', 'aggregator = "geomedian:iters=5"'))
    assert node_settings(path).gossip.aggregator == "geomedian:iters=5"
    path = write_config(('aggregator = "mean"', 'aggregator = "geomedian:iters=0"'))
    with pytest.raises(UserError, match="gossip.aggregator is not valid: geomedian: iters must be"):
        node_settings(path)
