"""trimmed_mean:b=B: per coordinate, drop the B largest and B smallest values and average the rest.

Yin et al., "Byzantine-robust distributed learning: towards optimal statistical rates", ICML
2018, used per neighbourhood as in decentralized robust consensus. Every model counts once
(the mixing weights are ignored). Needs k >= 2B + 1 models; tolerates B Byzantine neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from p2pfl.gossip.aggregators._rule import Rule, Values
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.robust import order_mean
from p2pfl.registry import Param


class TrimmedMean(Rule):
    name = "trimmed_mean"
    summary = "coordinate-wise mean after dropping the b largest and b smallest values"
    params = (Param("b", 1, "values dropped at each end, per coordinate (tolerated attackers)"),)
    paper = "Yin et al., Byzantine-robust distributed learning, ICML 2018"

    def parse(self, spec: str, text: Mapping[str, str]) -> dict[str, object]:
        raw = text.get("b", "1")
        try:
            return {"b": int(raw)}
        except ValueError:
            raise GossipSettingError(f"trimmed_mean: b must be a positive integer, got {raw!r}") from None

    def check(self, values: Values) -> None:
        b = values.get("b")
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise GossipSettingError(f"trimmed_mean: b must be a positive integer, got {b!r}")

    def min_models(self, values: Values) -> int:
        return 2 * int(values["b"]) + 1  # type: ignore[call-overload]

    def tolerates(self, values: Values) -> int:
        return int(values["b"])  # type: ignore[call-overload]

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        b = int(values["b"])  # type: ignore[call-overload]
        counts = mask.sum(dim=1)
        return order_mean(stack, mask, torch.full_like(counts, b), counts - b - 1)


COMPONENT = TrimmedMean()
