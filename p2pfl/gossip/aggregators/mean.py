"""mean: the mixing-weighted average of the neighbourhood, plain gossip averaging (D-PSGD).

Lian et al., "Can decentralized algorithms outperform centralized algorithms? A case study
for decentralized parallel stochastic gradient descent", NeurIPS 2017.
"""

from __future__ import annotations

import torch

from p2pfl.gossip.aggregators._rule import Rule, Values


class Mean(Rule):
    name = "mean"
    summary = "mixing-weighted average (plain gossip, D-PSGD); not robust"
    paper = "Lian et al., NeurIPS 2017 (D-PSGD)"
    linear = True

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        return torch.bmm(weight[:, None, :], stack)[:, 0]


COMPONENT = Mean()
