"""What one node puts on the wire each round, and how it checks and combines what arrives.

Dense updates carry the model's tensors. Compressed ones carry one flat vector: float16 and
int8 quantise the model itself ("direct"); top-k runs CHOCO-Gossip (Koloskova, Stich and Jaggi,
ICML 2019): each node sends the compressed difference between its model and its public copy,
and everyone who holds that copy applies the same difference. A copy stays right only while
every difference arrives, so a receiver stops trusting a sender that it missed (or all of
them after its own restart) until that sender's periodic full copy arrives.
"""

from __future__ import annotations

import torch

from p2pfl.gossip.combine import combine
from p2pfl.gossip.compression import ChocoNode, Compression, Encoded
from p2pfl.gossip.compression import encode as encode_vector
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import Aggregator
from p2pfl.learning.params import flatten, unflatten
from p2pfl.protocol.checks import Spec, check_against
from p2pfl.protocol.compressed import FULL, from_wire, full_wire, to_wire
from p2pfl.protocol.messages import ModelUpdate, ProtocolViolation
from p2pfl.protocol.rounds import Aggregate

State = dict[str, torch.Tensor]
FULL_EVERY = 20  # with CHOCO, every this many rounds a node sends its full public copy


class UpdateFormat:
    """One node's encoding of outgoing updates and its checks and combination of arrivals."""

    def __init__(self, specs: list[Spec], fingerprint: str, compression: Compression,
                 aggregator: Aggregator, initial: torch.Tensor, members: list[str],
                 restarted: bool, static: bool):
        self.specs = specs
        self.fingerprint = fingerprint
        self.compression = compression
        self.aggregator = aggregator
        self.n_params = initial.numel()
        self.choco: ChocoNode | None = None
        if compression.choco:
            if not static or not aggregator.is_linear:
                raise GossipSettingError(f"gossip.compression {compression} (CHOCO) needs a static topology "
                                "and gossip.aggregator = \"mean\"")
            self.choco = ChocoNode(compression, initial)
        # Copies start at the common initial model. After a restart ours are lost and the
        # neighbours' copy of ours is wrong: send a full copy first, trust no copy until a full one.
        self.send_full = restarted
        self.desynced: set[str] = set(members) if restarted else set()

    def outgoing(self, round: int, params: State) -> tuple[State, str]:
        """The tensors and encoding of this node's round update (CHOCO: updates its copy)."""
        c = self.compression
        if c.name == "none":
            return params, "dense"
        flat = flatten(params)
        if self.choco is None:
            return to_wire(encode_vector(c, flat)), str(c)
        q = self.choco.message(flat)
        if self.send_full or (round > 0 and round % FULL_EVERY == 0):
            self.send_full = False
            return full_wire(self.choco.x_hat), FULL
        return to_wire(q), str(c)

    def incoming(self, update: ModelUpdate) -> State:
        """A received update as tensors to combine; raises InvalidMessage (ProtocolViolation for
        another model)."""
        if self.compression.name == "none":
            return check_against(update, self.specs)
        if update.fingerprint != self.fingerprint:
            raise ProtocolViolation("model fingerprint does not match the local model's: the sender "
                                    "trains a different architecture")
        vector = from_wire(update, self.compression, self.n_params)
        return {update.encoding: vector} if self.choco is not None else unflatten(vector, self.specs)

    def combine(self, action: Aggregate) -> tuple[State, bool]:
        """The new model from an Aggregate action; False if too few models arrived for the
        aggregator (the own model is kept)."""
        if self.choco is None:
            return combine(list(action.states), list(action.weights), self.aggregator)
        weights = {}
        for sender, state, w in zip(action.senders, action.states[1:], action.weights[1:], strict=True):
            (encoding, vector), = state.items()
            if encoding == FULL:
                self.choco.reset(sender, vector)
                self.desynced.discard(sender)
            elif sender not in self.desynced:
                self.choco.receive(sender, Encoded("none", vector.numel(), vector))
            if sender not in self.desynced:
                weights[sender] = w
        self.desynced.update(action.missing)  # their copy missed this round's difference
        return unflatten(self.choco.mix(flatten(action.states[0]), weights), self.specs), True
