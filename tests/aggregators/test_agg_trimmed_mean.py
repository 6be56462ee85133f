"""The trimmed_mean:b=B aggregator: drop B values at each end per coordinate, average the rest."""

import numpy as np
import pytest
import torch

from p2pfl.gossip.combine import combine
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import mixing_matrix
from p2pfl.gossip.robust import (
    Aggregator,
    aggregate,
    neighbourhoods,
    parse_aggregator,
    robust_mix,
    trimmed_mean,
)


def test_parse_round_trip_and_needs():
    assert parse_aggregator("trimmed_mean") == Aggregator("trimmed_mean", b=1)
    assert parse_aggregator("trimmed_mean:b=3") == Aggregator("trimmed_mean", b=3)
    assert str(parse_aggregator("trimmed_mean:b=3")) == "trimmed_mean:b=3"
    assert parse_aggregator("trimmed_mean:b=2").min_models() == 5
    assert parse_aggregator("trimmed_mean:b=2").tolerates() == 2
    assert parse_aggregator("trimmed_mean:b=2").b == 2
    assert not parse_aggregator("trimmed_mean").is_linear


@pytest.mark.parametrize("spec,message", [
    ("trimmed_mean:b=0", "trimmed_mean: b must be a positive integer, got 0"),
    ("trimmed_mean:b=-1", "trimmed_mean: b must be a positive integer, got -1"),
    ("trimmed_mean:b=1.5", "trimmed_mean: b must be a positive integer, got '1.5'"),
    ("trimmed_mean:k=1", "aggregator trimmed_mean does not take k (takes: b)"),
])
def test_parse_rejects_bad_specs_with_one_clear_message(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_aggregator(spec)
    assert str(err.value) == message


@pytest.mark.parametrize("b", [1, 2, 3])
def test_trimmed_mean_ignores_up_to_b_huge_outliers(b):
    g = torch.Generator().manual_seed(b)
    honest = torch.randn(2 * b + 3, 40, generator=g)
    signs = torch.where(torch.rand(b, 40, generator=g) < 0.5, -1.0, 1.0)
    outliers = 1e30 * signs  # arbitrarily large, on either side, per coordinate
    models = torch.cat([honest, outliers])
    out = trimmed_mean(models, b)
    assert torch.isfinite(out).all()
    assert (out >= honest.min(dim=0).values - 1e-6).all()
    assert (out <= honest.max(dim=0).values + 1e-6).all()
    # and it is the textbook definition
    ref = models.sort(dim=0).values[b : len(models) - b].mean(dim=0)
    assert torch.allclose(out, ref, atol=1e-6)


def test_trimmed_mean_with_too_few_models_names_the_count():
    with pytest.raises(GossipSettingError) as err:
        trimmed_mean(torch.zeros(4, 3), 2)
    assert str(err.value) == (
        "trimmed_mean with b=2 needs at least 5 models (self and neighbours), the node has 4"
    )
    n = 10
    edges = np.array([(i, (i + 1) % n) for i in range(n)])  # ring: every node has 3 models
    table = neighbourhoods(mixing_matrix(n, edges))
    with pytest.raises(GossipSettingError) as err:
        robust_mix(torch.zeros(n, 3), table, parse_aggregator("trimmed_mean:b=2"))
    assert str(err.value) == (
        "trimmed_mean with b=2 needs at least 5 models (self and neighbours), node 0 has 3"
    )
    star = neighbourhoods(mixing_matrix(5, np.array([(0, k) for k in range(1, 5)])))
    with pytest.raises(GossipSettingError, match="node 1 has 2$"):
        robust_mix(torch.zeros(5, 3), star, parse_aggregator("trimmed_mean:b=1"))


def test_too_few_models_keep_the_own_model_when_asked():
    agg = parse_aggregator("trimmed_mean:b=1")
    star = neighbourhoods(mixing_matrix(5, np.array([(0, k) for k in range(1, 5)])))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    out = robust_mix(x, star, agg, keep_short=True)
    assert torch.equal(out[1:], x[1:])  # leaves hold 2 models: they keep their own
    assert torch.allclose(out[0], x.sort(dim=0).values[1:4].mean(dim=0), atol=1e-6)  # the hub trims
    assert torch.equal(aggregate(x[:2], agg, keep_short=True), x[0])
    states = [{"w": x[0].clone()}, {"w": x[1].clone()}]
    kept, ok = combine(states, [0.5, 0.5], agg)
    assert not ok and torch.equal(kept["w"], x[0])
    combined, ok = combine(states + [{"w": x[2].clone()}], [1 / 3] * 3, agg)
    assert ok and torch.allclose(combined["w"], x[:3].median(dim=0).values)
