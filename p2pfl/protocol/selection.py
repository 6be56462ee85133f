"""Choosing the best round from every member's reported validation history, the same way at
every node: no member picks it alone.

For each round, the score is the median over the members that reported a value for it (a
member can move a median only with a majority; the mean would let one member pick the round by
reporting an extreme value). The best round has the highest score; a tie goes to the later
round (more training). Rounds with no value are never chosen. Pure: no I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """The chosen round (0-based index of a round that ended), its score and how many members'
    values the score is the median of."""

    round: int
    score: float
    members: int


def best_round(histories: Mapping[str, Sequence[float | None]]) -> Choice | None:
    """The best round by the median over members of their values (`histories`: member ->
    one value or None per round); None if no round has a value."""
    rounds = max((len(h) for h in histories.values()), default=0)
    best: Choice | None = None
    for r in range(rounds):
        values = [float(h[r]) for h in histories.values() if r < len(h) and h[r] is not None]
        if not values:
            continue
        score = statistics.median(values)
        if best is None or score >= best.score:
            best = Choice(r, score, len(values))
    return best
