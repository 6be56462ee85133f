"""median: per coordinate, the median of the neighbourhood's values (mean of the two middle ones
when their number is even). Every model counts once (the mixing weights are ignored).

Coordinate-wise median: Yin et al., "Byzantine-robust distributed learning: towards optimal
statistical rates", ICML 2018.
"""

from __future__ import annotations

import torch

from p2pfl.gossip.aggregators._rule import Rule, Values
from p2pfl.gossip.robust import order_mean


class Median(Rule):
    name = "median"
    summary = "coordinate-wise median of the models that arrived"
    paper = "Yin et al., Byzantine-robust distributed learning, ICML 2018"

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        counts = mask.sum(dim=1)
        return order_mean(stack, mask, (counts - 1) // 2, counts // 2)


COMPONENT = Median()
