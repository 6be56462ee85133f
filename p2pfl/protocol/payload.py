"""What one node puts on the wire each round, and how it checks and combines what arrives.

Four parts, one job each: `Encoder` (outgoing updates), `Validator` (arrivals),
`ChocoSession` (CHOCO's public copies, distrusted senders and full copies; None without CHOCO)
and `Combiner` (the new model). `UpdateFormat.build` wires them to share one session.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from p2pfl.gossip.compression import Compression
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import Aggregator
from p2pfl.protocol.checks import Spec
from p2pfl.protocol.choco_session import FULL_EVERY, ChocoSession
from p2pfl.protocol.combiner import Combiner
from p2pfl.protocol.incoming import Validator
from p2pfl.protocol.outgoing import Encoder

__all__ = ["FULL_EVERY", "ChocoSession", "Combiner", "Encoder", "UpdateFormat", "Validator"]


@dataclass(frozen=True)
class UpdateFormat:
    """One node's update handling, in its parts."""

    encoder: Encoder
    validator: Validator
    combiner: Combiner
    choco: ChocoSession | None

    @classmethod
    def build(cls, specs: list[Spec], fingerprint: str, compression: Compression, aggregator: Aggregator,
              initial: torch.Tensor, members: list[str], restarted: bool, static: bool) -> UpdateFormat:
        """The parts for a model of `specs` starting at `initial` (the same at every member);
        `restarted`: this node resumed from a checkpoint; `static`: the topology never changes."""
        session = None
        check_compression(compression, aggregator, static)
        if compression.choco:
            session = ChocoSession(compression, initial, members, restarted)
        validator = Validator(specs, fingerprint, compression, choco=session is not None)
        return cls(Encoder(compression, session), validator, Combiner(specs, aggregator, session), session)


def check_compression(compression: Compression, aggregator: Aggregator, static: bool) -> None:
    """GossipSettingError if `compression` cannot run with this aggregator and topology."""
    if compression.choco and (not static or not aggregator.is_linear):
        raise GossipSettingError(f"gossip.compression {compression} (CHOCO) needs a static topology "
                                 "and gossip.aggregator = \"mean\"")
