"""The two kinds of simulated attack: on the messages the malicious nodes send, or on their data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from p2pfl.registry import Param

if TYPE_CHECKING:
    from p2pfl.sim.data import NodeData

# (own [f, P]: the malicious nodes' models, honest [N - f, P], generator) -> what they send [f, P]
Forge = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class MessageAttack:
    """The malicious nodes train honestly but send a forged model (the same to every neighbour)."""

    name: str
    summary: str
    forge: Forge
    params: tuple[Param, ...] = ()
    paper: str = ""
    argument: str = "FRACTION"  # the spec is name:FRACTION
    on_messages = True


@dataclass(frozen=True)
class DataAttack:
    """The malicious nodes send honestly the model they trained on corrupted data."""

    name: str
    summary: str
    poison: Callable[[NodeData, np.ndarray], NodeData]  # (data, bad [N] bool) -> data they train on
    params: tuple[Param, ...] = ()
    paper: str = ""
    argument: str = "FRACTION"
    on_messages = False


Kind = MessageAttack | DataAttack
