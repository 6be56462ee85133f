"""The interface of an aggregation rule: what `COMPONENT` of every aggregator module is."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from p2pfl.registry import Param

Values = Mapping[str, object]


class Rule:
    """One aggregation rule. Subclasses set the class attributes and override `combine`.

    `values` are the rule's parameter values (keys among `params`, defaults filled by `parse`).
    """

    name: str
    summary: str
    params: tuple[Param, ...] = ()
    paper: str = ""
    linear: bool = False  # the plain weighted mean: a simulator may use the sparse W product instead

    def parse(self, spec: str, text: Mapping[str, str]) -> dict[str, object]:
        """Typed values, defaults filled, from the `key=value` texts of `spec` (keys already checked)."""
        return {}

    def check(self, values: Values) -> None:
        """Raise a GossipSettingError naming the parameter when `values` are not valid."""

    def min_models(self, values: Values) -> int:
        """Fewest models (self included) the rule can combine."""
        return 1

    def tolerates(self, values: Values) -> int:
        """How many Byzantine neighbours the rule is configured to tolerate (0: no guarantee)."""
        return 0

    def combine(self, stack: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                values: Values) -> torch.Tensor:
        """New models [n, P] of n neighbourhoods [n, D, P] (slot 0 = own model).

        `weight` [n, D]: mixing weights re-normalised over the slots present (0 on padding);
        `mask` [n, D]: which slots hold a model. Every row holds at least `min_models` models.
        """
        raise NotImplementedError
