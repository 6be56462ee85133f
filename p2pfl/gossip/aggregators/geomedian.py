"""geomedian[:iters=T,eps=NU,ftol=F]: the weighted geometric median of the neighbourhood.

RFA, robust federated aggregation: Pillutla, Kakade and Harchaoui, "Robust Aggregation for
Federated Learning", IEEE Transactions on Signal Processing 70, 2022. The geometric median
argmin_v sum_k a_k ||v - x_k|| (a_k: the mixing weights, re-normalised over the models present)
by the smoothed Weiszfeld iterations of the paper, started at the weighted mean:

    b_k = a_k / max(nu, ||v - x_k||),   v <- sum_k b_k x_k / sum_k b_k,

at most `iters` times per node (default 10), stopping a node early once its objective changes
by at most `ftol` (default 1e-6) relatively; nu = `eps` (default 1e-6) keeps the step finite
when v meets a model. Unlike the coordinate-wise median it is rotation invariant and moves by a
bounded amount whatever a minority (less than half the weight) sends.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from p2pfl.gossip.aggregators._rule import Rule, Values
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.spec import is_number, number
from p2pfl.registry import Param

DEFAULTS = {"iters": 10, "eps": 1e-6, "ftol": 1e-6}


class GeoMedian(Rule):
    name = "geomedian"
    summary = "weighted geometric median by smoothed Weiszfeld iterations (RFA)"
    params = (
        Param("iters", DEFAULTS["iters"], "most Weiszfeld iterations per node"),
        Param("eps", DEFAULTS["eps"], "smoothing nu: distances below it count as nu"),
        Param("ftol", DEFAULTS["ftol"], "stop once the objective changes by at most this fraction"),
    )
    paper = "Pillutla, Kakade and Harchaoui, Robust Aggregation for Federated Learning, IEEE TSP 2022"

    def parse(self, spec: str, text: Mapping[str, str]) -> dict[str, object]:
        values: dict[str, object] = dict(DEFAULTS)
        if "iters" in text:
            raw = text["iters"]
            try:
                values["iters"] = int(raw)
            except ValueError:
                raise GossipSettingError(f"geomedian: iters must be a positive integer, "
                                         f"got {raw!r}") from None
        for key in ("eps", "ftol"):
            if key in text:
                values[key] = number(f"geomedian: {key}", text[key])
        return values

    def check(self, values: Values) -> None:
        iters = values.get("iters", DEFAULTS["iters"])
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise GossipSettingError(f"geomedian: iters must be a positive integer, got {iters!r}")
        eps = values.get("eps", DEFAULTS["eps"])
        if not (is_number(eps) and 0 < eps < float("inf")):  # type: ignore[operator]
            raise GossipSettingError(f"geomedian: eps must be a positive number, got {eps!r}")
        ftol = values.get("ftol", DEFAULTS["ftol"])
        if not (is_number(ftol) and 0 <= ftol < float("inf")):  # type: ignore[operator]
            raise GossipSettingError(f"geomedian: ftol must be a non-negative number, got {ftol!r}")

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        iters = int(values.get("iters", DEFAULTS["iters"]))  # type: ignore[call-overload]
        eps = float(values.get("eps", DEFAULTS["eps"]))  # type: ignore[arg-type]
        ftol = float(values.get("ftol", DEFAULTS["ftol"]))  # type: ignore[arg-type]
        zero = torch.zeros((), dtype=stack.dtype)
        points = torch.where(mask[:, :, None], stack, zero)  # padding: weight 0, value ignored
        tiny = torch.finfo(stack.dtype).tiny
        v = torch.bmm(weight[:, None, :], points)[:, 0]
        dist = torch.linalg.vector_norm(points - v[:, None], dim=2)
        objective = (weight * dist).sum(dim=1)
        active = torch.ones(stack.shape[0], dtype=torch.bool)
        for _ in range(iters):
            beta = weight / dist.clamp_min(eps)
            step = torch.bmm(beta[:, None, :], points)[:, 0] / beta.sum(dim=1, keepdim=True).clamp_min(tiny)
            v = torch.where(active[:, None], step, v)
            dist = torch.linalg.vector_norm(points - v[:, None], dim=2)
            new = (weight * dist).sum(dim=1)
            active &= (objective - new).abs() > ftol * new
            objective = new
            if not bool(active.any()):
                break
        return v


COMPONENT = GeoMedian()
