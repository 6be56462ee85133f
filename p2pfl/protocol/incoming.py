"""Checking a received, verified update against the local model before it is combined.

Dense updates: `checks.check_against` (names, shapes, dtypes, finite values). Compressed ones:
the model fingerprint, then `compressed.from_wire` (the compression member's wire checks).
"""

from __future__ import annotations

import math

import torch

from p2pfl.gossip.compression import Compression
from p2pfl.learning.params import unflatten
from p2pfl.protocol.checks import Spec, check_against
from p2pfl.protocol.choco_session import ChocoSession
from p2pfl.protocol.compressed import from_wire
from p2pfl.protocol.messages import ModelUpdate, ProtocolViolation

State = dict[str, torch.Tensor]


class Validator:
    """The round machine's `validate`: an arrival as tensors to combine, or InvalidMessage."""

    def __init__(self, specs: list[Spec], fingerprint: str, compression: Compression, choco: bool):
        self.specs = specs
        self.fingerprint = fingerprint
        self.compression = compression
        self.choco = choco
        self.n_params = sum(math.prod(shape) for _, shape, _ in specs)

    def check(self, update: ModelUpdate) -> State:
        """The update's tensors (CHOCO: its vector, see `ChocoSession.arrival`); raises
        InvalidMessage."""
        if self.compression.is_identity:
            return check_against(update, self.specs)
        if update.fingerprint != self.fingerprint:
            raise ProtocolViolation("model fingerprint does not match the local model's: the sender "
                                 "trains a different architecture")
        vector = from_wire(update, self.compression, self.n_params)
        if self.choco:
            return ChocoSession.arrival(update.encoding, vector)
        return unflatten(vector, self.specs)
