"""Combine a node's own model with the models that arrived, by the configured rule.

This is what a node does with an `Aggregate` action of the round state machine: the mixing
weights are those of the node's row of W, already re-normalised over what arrived (own first).
"""

from __future__ import annotations

import torch

from p2pfl.gossip.mixing import weighted_average_state
from p2pfl.gossip.robust import Aggregator, aggregate

State = dict[str, torch.Tensor]


def combine(states: list[State], weights: list[float], agg: Aggregator) -> tuple[State, bool]:
    """(combined state, True), or (own state, False) when fewer models arrived than `agg`
    needs (`robust.aggregate` with `keep_short`: a trimmed mean over too few models would not
    be robust, the own model is kept)."""
    if agg.is_linear:
        return weighted_average_state(states, weights), True
    names = list(states[0])
    flat = torch.stack([torch.cat([s[n].reshape(-1).float() for n in names]) for s in states])
    out = aggregate(flat, agg, torch.as_tensor(weights, dtype=torch.float32), keep_short=True)
    combined: State = {}
    start = 0
    for n in names:
        ref = states[0][n]
        combined[n] = out[start : start + ref.numel()].view_as(ref).to(ref.dtype)
        start += ref.numel()
    return combined, len(states) >= agg.min_models()
