"""clipped: self-centred clipping, ClippedGossip.

He, Karimireddy and Jaggi, "Byzantine-robust decentralized learning via ClippedGossip", 2022:
x_i <- x_i + sum_j w_ij clip(x_j - x_i, tau_i), clip(z, tau) = z * min(1, tau / ||z||), with
the mixing weights re-normalised over the models present. Either a fixed radius
(`clipped:tau=T`), or the adaptive radius `clipped:delta=D` (default D = 0.1): tau_i is the
smallest distance ||x_j - x_i|| such that the neighbours farther than tau_i hold at most a
fraction D of node i's neighbour weight, i.e. the weighted (1 - D) quantile of the distances
(`robust.clip_radius`). This is our reading of the paper's adaptive rule, which sizes tau_i by
the neighbour weight that may be Byzantine (delta_i there); the exact formula here is ours. Its
guarantee: if the attackers hold at most D of the neighbour weight, tau_i is at most the
distance to the farthest honest neighbour. Needs only the distances and one batched product.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from p2pfl.gossip.aggregators._rule import Rule, Values
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import clip_radius
from p2pfl.gossip.spec import is_number, number
from p2pfl.registry import Param

DEFAULT_DELTA = 0.1


class Clipped(Rule):
    name = "clipped"
    summary = "ClippedGossip: move towards each neighbour by at most a (fixed or adaptive) radius"
    params = (
        Param("tau", None, "fixed clipping radius"),
        Param("delta", DEFAULT_DELTA, "adaptive radius: fraction of neighbour weight beyond it"),
    )
    paper = "He, Karimireddy and Jaggi, Byzantine-robust decentralized learning via ClippedGossip, 2022"

    def parse(self, spec: str, text: Mapping[str, str]) -> dict[str, object]:
        if not text:
            return {"delta": DEFAULT_DELTA}
        return {key: number(f"clipped: {key}", raw) for key, raw in text.items()}

    def check(self, values: Values) -> None:
        tau, delta = values.get("tau"), values.get("delta")
        if (tau is None) == (delta is None):
            raise GossipSettingError("clipped: give exactly one of tau (fixed radius) or delta (adaptive)")
        if tau is not None and not (is_number(tau) and 0 < tau < float("inf")):  # type: ignore[operator]
            raise GossipSettingError(f"clipped: tau must be a positive number, got {tau!r}")
        if delta is not None and not (is_number(delta) and 0 <= delta < 1):  # type: ignore[operator]
            raise GossipSettingError(f"clipped: delta must be a number in [0, 1), got {delta!r}")

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        n, d, _ = stack.shape
        own = stack[:, 0]
        if d == 1:
            return own.clone()
        diffs = stack[:, 1:] - own[:, None]
        dist = torch.linalg.vector_norm(diffs, dim=2)
        wn = weight[:, 1:]
        if values.get("tau") is not None:
            tau = torch.full((n,), float(values["tau"]), dtype=dist.dtype)  # type: ignore[arg-type]
        else:
            tau = clip_radius(dist, wn, float(values["delta"])).to(dist.dtype)  # type: ignore[arg-type]
        tau = tau[:, None]
        scale = torch.where(dist > tau, tau / dist.clamp_min(torch.finfo(dist.dtype).tiny),
                            torch.ones_like(dist))
        return own + torch.bmm((wn * scale)[:, None, :], diffs)[:, 0]


COMPONENT = Clipped()
