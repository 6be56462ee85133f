"""One node's CHOCO-Gossip session: public copies, which senders' copies are off, full copies.

CHOCO-Gossip (Koloskova, Stich and Jaggi, ICML 2019): each node sends the compressed
difference between its model and its public copy, and everyone who holds that copy applies the
same difference. A copy stays right only while every difference arrives, so a receiver stops
trusting a sender that it missed (or all of them after its own restart) until that sender's
next full copy arrives; a node sends one after a restart and every FULL_EVERY rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from p2pfl.gossip.compression import ChocoNode, Compression, Encoded
from p2pfl.protocol.compressed import FULL

State = dict[str, torch.Tensor]
FULL_EVERY = 20  # every this many rounds a node sends its full public copy


class ChocoSession:
    """The CHOCO state of one daemon node and the bookkeeping that keeps its copies right."""

    def __init__(self, compression: Compression, initial: torch.Tensor, members: Iterable[str],
                 restarted: bool):
        # Copies start at the common initial model. After a restart ours are lost and the
        # neighbours' copy of ours is wrong: send a full copy first, trust no copy until a full one.
        self.node = ChocoNode(compression, initial)
        self.send_full = restarted
        self.desynced: set[str] = set(members) if restarted else set()

    @property
    def x_hat(self) -> torch.Tensor:
        """This node's own public copy."""
        return self.node.x_hat

    def publish(self, round: int, flat: torch.Tensor) -> tuple[Encoded, bool]:
        """This round's compressed difference (already applied to the own public copy), and
        whether the full public copy is due instead (after a restart, every FULL_EVERY rounds)."""
        q = self.node.message(flat)
        full = self.send_full or (round > 0 and round % FULL_EVERY == 0)
        self.send_full = False
        return q, full

    @staticmethod
    def arrival(encoding: str, vector: torch.Tensor) -> State:
        """How a checked arrival travels through the round machine: its vector, keyed by its
        encoding (FULL for a full copy, the compression spec for a difference)."""
        return {encoding: vector}

    def absorb(self, senders: Sequence[str], arrivals: Sequence[State], weights: Sequence[float],
               missing: Iterable[str]) -> dict[str, float]:
        """Apply the arrivals to the senders' copies; the mixing weights of the senders whose
        copy is right. Senders in `missing` missed this round's difference: distrusted."""
        trusted = {}
        for sender, state, w in zip(senders, arrivals, weights, strict=True):
            (encoding, vector), = state.items()
            if encoding == FULL:
                self.node.reset(sender, vector)
                self.desynced.discard(sender)
            elif sender not in self.desynced:
                self.node.receive(sender, Encoded("none", vector.numel(), vector))
            if sender not in self.desynced:
                trusted[sender] = w
        self.desynced.update(missing)
        return trusted

    def mix(self, flat: torch.Tensor, weights: dict[str, float]) -> torch.Tensor:
        """The consensus step x + gamma sum_j w_j (x_hat_j - x_hat) on the own vector."""
        return self.node.mix(flat, weights)
