"""The median aggregator: the coordinate-wise median of the neighbourhood."""

import numpy as np
import pytest
import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import Aggregator, median, parse_aggregator


def test_parse_round_trip():
    assert parse_aggregator(" median ") == Aggregator("median")
    assert str(parse_aggregator("median")) == "median"
    agg = parse_aggregator("median")
    assert agg.min_models() == 1 and agg.tolerates() == 0 and not agg.is_linear
    with pytest.raises(GossipSettingError) as err:
        parse_aggregator("median:b=1")
    assert str(err.value) == "aggregator median does not take b (takes: none)"


def test_median_matches_numpy_for_odd_and_even_counts_and_ignores_a_minority_of_outliers():
    g = torch.Generator().manual_seed(2)
    for k in (1, 2, 5, 8, 11):
        models = torch.randn(k, 30, generator=g)
        assert torch.allclose(median(models), torch.from_numpy(np.median(models.numpy(), axis=0)), atol=1e-6)
    honest = torch.randn(6, 30, generator=g)
    models = torch.cat([honest, torch.full((5, 30), 1e30)])  # 5 of 11 are attackers
    out = median(models)
    assert (out <= honest.max(dim=0).values).all() and (out >= honest.min(dim=0).values).all()
