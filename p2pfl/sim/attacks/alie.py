"""ALIE, "a little is enough": mean - z * std of the honest models, per coordinate.

Baruch, Baruch and Goldberg, "A little is enough: circumventing defenses for distributed
learning", NeurIPS 2019. z is the paper's z_max = Phi^-1((n - s) / n), s = floor(n / 2 + 1) - f
for n nodes of which f are malicious (z at least 0.1).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

from p2pfl.sim.attacks._kind import MessageAttack


def alie_z(n: int, f: int) -> float:
    """z_max of Baruch et al. 2019 for n nodes with f malicious ones."""
    s = math.floor(n / 2 + 1) - f
    return max(0.1, NormalDist().inv_cdf(min(max((n - s) / n, 1e-6), 1 - 1e-6)))


def _little(own: torch.Tensor, honest: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    z = alie_z(len(own) + len(honest), len(own))
    std = honest.std(dim=0, unbiased=len(honest) > 1)
    return (honest.mean(dim=0) - z * std)[None].expand(len(own), -1)


COMPONENT = MessageAttack(
    "alie", "the malicious nodes send mean - z * std of the honest models, just inside the spread",
    _little, paper="Baruch, Baruch and Goldberg, A little is enough: circumventing defenses for "
    "distributed learning, NeurIPS 2019")
