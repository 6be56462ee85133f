"""Gaussian noise: the malicious nodes send N(0, s^2) per coordinate.

s is the root-mean-square value of the honest models' coordinates (noise of the model's scale).
"""

from __future__ import annotations

import torch

from p2pfl.sim.attacks._kind import MessageAttack


def _noise(own: torch.Tensor, honest: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    scale = float(honest.double().pow(2).mean().sqrt())
    return scale * torch.randn(own.shape, generator=generator, dtype=own.dtype)


COMPONENT = MessageAttack("gaussian", "the malicious nodes send Gaussian noise of the honest models' scale",
                          _noise)
