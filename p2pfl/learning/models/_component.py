"""What a model module of the registry defines, and the shared pieces of the built-in models."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from p2pfl.registry import Param

Factory = Callable[[tuple[int, ...], int, tuple[int, ...]], nn.Module]


@dataclass(frozen=True)
class ModelComponent:
    """A registered model: `factory(input_shape, n_classes, hidden)` builds a fresh nn.Module."""

    name: str
    summary: str
    factory: Factory
    params: tuple[Param, ...] = ()
    paper: str | None = None


class FlatSequential(nn.Sequential):
    """nn.Sequential that first flattens each example ([B, *shape] -> [B, prod(shape)]).

    Unlike nn.Flatten as a first layer it adds no child, so parameter names (and with them
    fingerprints and checkpoints) are those of the plain nn.Sequential over a flat table; on a
    flat batch the flatten is the same tensor, so results are bit for bit those of nn.Sequential.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


def flat_size(input_shape: tuple[int, ...]) -> int:
    """Number of features of one example."""
    return math.prod(input_shape)
