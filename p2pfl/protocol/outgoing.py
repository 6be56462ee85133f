"""The tensors and encoding of one node's round update, as they go on the wire.

No compression: the model's tensors ("dense"). Direct compression: the compressed flat vector,
encoded as the compression spec. CHOCO: the compressed difference to the public copy, or the
full public copy (`FULL`) when the session says it is due.
"""

from __future__ import annotations

import torch

from p2pfl.gossip.compression import Compression
from p2pfl.gossip.compression import encode as encode_vector
from p2pfl.learning.params import flatten
from p2pfl.protocol.choco_session import ChocoSession
from p2pfl.protocol.compressed import FULL, full_wire, to_wire

State = dict[str, torch.Tensor]


class Encoder:
    """Builds this node's outgoing updates (with CHOCO: advances its own public copy)."""

    def __init__(self, compression: Compression, session: ChocoSession | None):
        self.compression = compression
        self.session = session

    def encode(self, round: int, params: State) -> tuple[State, str]:
        """The tensors and encoding of this node's update of `round`."""
        c = self.compression
        if c.is_identity:
            return params, "dense"
        flat = flatten(params)
        if self.session is None:
            return to_wire(encode_vector(c, flat)), str(c)
        q, full = self.session.publish(round, flat)
        if full:
            return full_wire(self.session.x_hat), FULL
        return to_wire(q), str(c)
