"""Models: logistic regression and a multi-layer perceptron."""

from __future__ import annotations

import torch
from torch import nn

from p2pfl.learning.errors import LearningSettingError

MODELS = ("logreg", "mlp")


def parse_hidden(text: str | list[int] | tuple[int, ...] | None) -> tuple[int, ...]:
    """'32,16' -> (32, 16)."""
    if text is None or text == "":
        return (32,)
    if isinstance(text, (list, tuple)):
        sizes = tuple(int(h) for h in text)
    else:
        try:
            sizes = tuple(int(h) for h in str(text).split(",") if h.strip())
        except ValueError:
            raise LearningSettingError(f"--hidden must be comma-separated integers like 32,16, got "
                                       f"{text!r}") from None
    if not sizes or any(h < 1 for h in sizes):
        raise LearningSettingError(f"--hidden sizes must be positive integers, got {text!r}")
    return sizes


def build_model(
    kind: str, in_features: int, n_classes: int, hidden: tuple[int, ...] = (32,), seed: int = 0
) -> nn.Module:
    """A freshly initialised model; the same (kind, sizes, seed) always gives the same weights."""
    if kind not in MODELS:
        raise LearningSettingError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind == "logreg":
            return nn.Sequential(nn.Linear(in_features, n_classes))
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(gen_state)
