"""The new model of a node from an `Aggregate` action of the round machine.

Without CHOCO: `gossip.combine.combine` of the own and the arrived models by the aggregator.
With CHOCO: the session applies the arrivals to its copies and mixes the public copies.
"""

from __future__ import annotations

import torch

from p2pfl.gossip.combine import combine
from p2pfl.gossip.robust import Aggregator
from p2pfl.learning.params import flatten, unflatten
from p2pfl.protocol.checks import Spec
from p2pfl.protocol.choco_session import ChocoSession
from p2pfl.protocol.rounds import Aggregate

State = dict[str, torch.Tensor]


class Combiner:
    """Combines a round's arrivals with the own model."""

    def __init__(self, specs: list[Spec], aggregator: Aggregator, session: ChocoSession | None):
        self.specs = specs
        self.aggregator = aggregator
        self.session = session

    def combine(self, action: Aggregate) -> tuple[State, bool]:
        """The new model; False if too few models arrived for the aggregator (the own model
        is kept)."""
        if self.session is None:
            return combine(list(action.states), list(action.weights), self.aggregator)
        weights = self.session.absorb(action.senders, action.states[1:], action.weights[1:], action.missing)
        return unflatten(self.session.mix(flatten(action.states[0]), weights), self.specs), True
