"""krum:f=F[,m=M]: keep the model(s) closest to their neighbours, average them.

Krum and Multi-Krum: Blanchard, El Mhamdi, Guerraoui and Stainer, "Machine learning with
adversaries: Byzantine tolerant gradient descent", NeurIPS 2017, applied per neighbourhood (as
decentralized robust aggregation does with the models a node received). With k models (self
included) of which at most f are Byzantine, each model's score is the sum of its squared
distances to its k - f - 2 nearest other models; Krum keeps the model of lowest score, Multi-Krum
the m lowest and averages them (every model counts once; the mixing weights are ignored). Needs
k >= 2f + 3 and m <= k - f. Ties go to the lower slot (the own model first).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from p2pfl.gossip.aggregators._rule import Rule, Values
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.registry import Param


class Krum(Rule):
    name = "krum"
    summary = "the m models closest to their k - f - 2 nearest neighbours, averaged (m = 1: Krum)"
    params = (Param("f", 1, "Byzantine models tolerated per neighbourhood"),
              Param("m", 1, "models kept and averaged (Multi-Krum when > 1)"))
    paper = "Blanchard, El Mhamdi, Guerraoui and Stainer, Machine learning with adversaries, NeurIPS 2017"

    def parse(self, spec: str, text: Mapping[str, str]) -> dict[str, object]:
        values: dict[str, object] = {}
        for p in self.params:
            raw = text.get(p.key, str(p.default))
            try:
                values[p.key] = int(raw)
            except ValueError:
                raise GossipSettingError(f"krum: {p.key} must be a positive integer, got {raw!r}") from None
        return values

    def check(self, values: Values) -> None:
        for p in self.params:
            v = values.get(p.key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GossipSettingError(f"krum: {p.key} must be a positive integer, got {v!r}")

    def min_models(self, values: Values) -> int:
        f, m = int(values["f"]), int(values["m"])  # type: ignore[call-overload]
        return max(2 * f + 3, m + f)

    def tolerates(self, values: Values) -> int:
        return int(values["f"])  # type: ignore[call-overload]

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        f, m = int(values["f"]), int(values["m"])  # type: ignore[call-overload]
        n, d, _ = stack.shape
        dist = torch.cdist(stack.double(), stack.double()).square()  # [n, D, D]
        pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(d, dtype=torch.bool)[None]
        dist = torch.where(pair, dist, torch.full_like(dist, float("inf")))
        nearest = torch.sort(dist, dim=2).values.cumsum(dim=2)  # sums of the j + 1 nearest
        closest = (mask.sum(dim=1) - f - 2).clamp_min(1) - 1  # index of the k - f - 2 nearest
        score = torch.gather(nearest, 2, closest.view(n, 1, 1).expand(n, d, 1))[:, :, 0]
        score = torch.where(mask, score, torch.full_like(score, float("inf")))
        order = torch.sort(score, dim=1, stable=True).indices[:, :m]  # lowest scores, lower slot first
        chosen = torch.gather(stack, 1, order[:, :, None].expand(n, m, stack.shape[2]))
        return chosen.mean(dim=1)


COMPONENT = Krum()
