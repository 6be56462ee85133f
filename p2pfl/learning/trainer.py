"""Local training of one torch model: optimizers and SGD steps over planned batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p2pfl.learning.errors import LearningSettingError

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings; the same for every node."""

    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise LearningSettingError(f"unknown optimizer {self.name!r}; choose one of "
                                       f"{', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise LearningSettingError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise LearningSettingError(f"momentum must be in [0, 1), got {self.momentum}")


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """torch.optim.SGD (with momentum) or Adam for the model's parameters."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: list[np.ndarray],
) -> float:
    """Take one optimizer step per batch of row indices; returns the mean loss (nan if none)."""
    model.train()
    total = 0.0
    for rows in batches:
        idx = torch.from_numpy(rows)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return total / len(batches) if batches else float("nan")


@torch.no_grad()
@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class probabilities (softmax of the logits, float64 [rows, classes]) in eval mode."""
    model.eval()
    return torch.softmax(model(x).double(), dim=1).numpy() if len(x) else np.zeros((0, 0))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows classified correctly."""
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean()) if len(y) else float("nan")
