"""Multinomial logistic regression: one linear layer (images are flattened)."""

from __future__ import annotations

from torch import nn

from p2pfl.learning.models._component import FlatSequential, ModelComponent, flat_size


def build(input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...]) -> nn.Module:
    return FlatSequential(nn.Linear(flat_size(input_shape), n_classes))


COMPONENT = ModelComponent("logreg", "logistic regression: one linear layer", build)
