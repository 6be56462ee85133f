"""Multi-layer perceptron: Linear + ReLU per hidden size, then a linear output layer."""

from __future__ import annotations

from torch import nn

from p2pfl.learning.models._component import FlatSequential, ModelComponent, flat_size
from p2pfl.registry import Param


def build(input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    width = flat_size(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return FlatSequential(*layers)


COMPONENT = ModelComponent(
    "mlp", "multi-layer perceptron with ReLU (images are flattened)", build,
    params=(Param("hidden", (32,), "hidden layer sizes (--hidden 32,16 / model.hidden)"),),
)
