"""The mean aggregator: the mixing-weighted average, plain gossip."""

import torch

from p2pfl.gossip.robust import AGGREGATORS, Aggregator, aggregate, parse_aggregator


def test_parse_and_properties():
    assert parse_aggregator("mean") == Aggregator("mean") == Aggregator()
    assert str(parse_aggregator("mean")) == "mean"
    agg = parse_aggregator("mean")
    assert agg.is_linear and agg.min_models() == 1 and agg.tolerates() == 0
    assert AGGREGATORS.get("mean").linear


def test_mean_is_the_renormalised_weighted_average():
    g = torch.Generator().manual_seed(1)
    models = torch.randn(5, 9, generator=g)
    weights = torch.rand(5, generator=g)
    out = aggregate(models, parse_aggregator("mean"), weights)
    assert torch.allclose(out, (weights / weights.sum()) @ models, atol=1e-6)
    assert torch.allclose(aggregate(models, parse_aggregator("mean")), models.mean(dim=0), atol=1e-6)


def test_mean_is_dragged_by_one_huge_outlier():
    models = torch.zeros(5, 3)
    models[4] = 1e9
    assert (aggregate(models, parse_aggregator("mean")) > 1e8).all()
