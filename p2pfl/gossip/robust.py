"""Robust aggregation of a node's own model with the models its neighbours sent: the engine.

A neighbourhood is a [k, P] tensor whose row 0 is the node's own model and rows 1.. are what
arrived. The rules themselves are the modules of `p2pfl.gossip.aggregators`, one per rule
(mean, trimmed_mean, median, clipped, ...), found by the registry `AGGREGATORS`; an
`Aggregator` is one rule with its parameter values, built by `parse_aggregator('name:k=v')`.
This module does what is common to all rules: it gathers neighbourhoods, checks that each holds
enough models for the rule (a GossipSettingError, or with `keep_short` the node keeps its own model:
a trimmed mean over too few models would not be robust), re-normalises the mixing weights over
the models present and hands [n, D, P] blocks with weights and mask to the rule's `combine`.
Models must be finite (the daemon's update checks reject others); +-inf is ordered like any
other value, NaN is not supported.

Batched form for the simulator: every node's neighbourhood is a row of a padded index table
[N, D] (column 0 = the node itself, padding points at the node itself and is masked out), built
once per mixing matrix by `neighbourhoods`. `robust_mix` gathers blocks of nodes into
[n, D, P] tensors (about 4 MiB each, so they stay in cache) and aggregates each block with
pure elementwise tensor operations: the per-coordinate order statistics of `order_mean` come
from a Batcher merge-exchange sorting network over the D rows (O(D log^2 D) `minimum`/`maximum`
calls on [n, P] slices). For N = 1,000 nodes of degree 10 and P = 2,000 on one CPU thread that
is about 80-90 ms per round for median or trimmed mean (torch.sort along the short dimension
alone took about 370 ms) and 30-40 ms for clipping, against 8 ms for the plain sparse mean.
Wide neighbourhoods (D > 32) use `torch.sort`. Padding is +inf before sorting, so with
c_i real models the sorted real values sit in positions 0..c_i - 1 and variable degrees
need no special case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import torch

from p2pfl.gossip.aggregators._rule import Rule
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.spec import key_values
from p2pfl.registry import Registry

AGGREGATORS: Registry[Rule] = Registry("aggregator", "p2pfl.gossip.aggregators", GossipSettingError)

NETWORK_LIMIT = 32  # sort neighbourhoods of at most this many models with a sorting network
BLOCK_BYTES = 4 << 20  # size of one gathered [n, D, P] block in robust_mix


class Aggregator:
    """A validated aggregation rule: its name and parameter values. Build with `parse_aggregator`.

    `Aggregator("trimmed_mean", b=1)` gives the values directly (None: not set); they are
    readable as attributes (`agg.b`). Frozen and hashable; `str(agg)` is a spec that
    `parse_aggregator` reads back.
    """

    __slots__ = ("name", "params")
    name: str
    params: tuple[tuple[str, object], ...]  # (key, value) in the order of the rule's params

    def __init__(self, name: str = "mean", **values: object):
        rule = AGGREGATORS.get(name)
        given = {key: value for key, value in values.items() if value is not None}
        _check_keys(rule, given)
        rule.check(given)
        object.__setattr__(self, "name", name)
        params = tuple((p.key, given[p.key]) for p in rule.params if p.key in given)
        object.__setattr__(self, "params", params)

    @property
    def rule(self) -> Rule:
        """The registry member that implements this aggregator."""
        return AGGREGATORS.get(self.name)

    @property
    def values(self) -> dict[str, object]:
        """The parameter values, by key."""
        return dict(self.params)

    @property
    def is_linear(self) -> bool:
        """True for the plain mixing-weighted mean (gossip averaging, D-PSGD): a linear W-mix."""
        return self.rule.linear

    def min_models(self) -> int:
        """Fewest models (self included) the rule can combine (2b + 1 for trimmed_mean, else 1)."""
        return self.rule.min_models(self.values)

    def tolerates(self) -> int:
        """How many Byzantine neighbours the rule is configured to tolerate (0 for mean)."""
        return self.rule.tolerates(self.values)

    def __getattr__(self, key: str) -> object:
        if key.startswith("_") or key in Aggregator.__slots__:
            raise AttributeError(key)
        for k, value in self.params:
            if k == key:
                return value
        if any(p.key == key for p in self.rule.params):
            return None
        raise AttributeError(f"aggregator {self.name} has no parameter {key!r}")

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Aggregator is frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Aggregator) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self) -> int:
        return hash((self.name, self.params))

    def __reduce__(self) -> tuple[object, ...]:
        return _build, (self.name, self.values)

    def __repr__(self) -> str:
        return f"Aggregator({', '.join([repr(self.name)] + [f'{k}={v!r}' for k, v in self.params])})"

    def __str__(self) -> str:
        parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params]
        return self.name + (":" + ",".join(parts) if parts else "")


def _build(name: str, values: Mapping[str, object]) -> Aggregator:
    return Aggregator(name, **values)


def _check_keys(rule: Rule, given: Mapping[str, object]) -> None:
    allowed = [p.key for p in rule.params]
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise GossipSettingError(f"aggregator {rule.name} does not take {', '.join(unknown)} "
                        f"(takes: {', '.join(allowed) or 'none'})")


def parse_aggregator(spec: str) -> Aggregator:
    """'name[:key=value,...]', e.g. 'mean', 'median', 'trimmed_mean:b=1', 'clipped:delta=0.1'."""
    name, _, rest = str(spec).strip().partition(":")
    rule = AGGREGATORS.get(name.strip())
    text = key_values(spec, rest)
    _check_keys(rule, text)
    return Aggregator(rule.name, **rule.parse(spec, text))


# ---- one node ----------------------------------------------------------------------------------


def aggregate(
    models: torch.Tensor, agg: Aggregator, weights: torch.Tensor | None = None, keep_short: bool = False
) -> torch.Tensor:
    """Combine one node's neighbourhood [k, P] (row 0 = own model) into its new model [P].

    `weights` [k] are the mixing weights (self first), re-normalised over the k rows; uniform
    when None. With `keep_short`, fewer than `agg.min_models()` models give the own model back
    instead of a GossipSettingError.
    """
    if models.dim() != 2 or models.shape[0] < 1:
        raise ValueError(f"models must be a [k, P] tensor with k >= 1, got shape {tuple(models.shape)}")
    w = None if weights is None else torch.as_tensor(weights, dtype=models.dtype).reshape(1, -1)
    if w is not None and w.shape[1] != models.shape[0]:
        raise ValueError(f"{w.shape[1]} weights for {models.shape[0]} models")
    return aggregate_stacked(models[None], agg, w, None, node=None, keep_short=keep_short)[0]


def trimmed_mean(models: torch.Tensor, b: int) -> torch.Tensor:
    """Coordinate-wise mean of [k, P] after dropping the b largest and b smallest per coordinate."""
    return aggregate(models, Aggregator("trimmed_mean", b=b))


def median(models: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of [k, P] (mean of the two middle values when k is even)."""
    return aggregate(models, Aggregator("median"))


def clipped_gossip(
    models: torch.Tensor,
    weights: torch.Tensor | None = None,
    tau: float | None = None,
    delta: float | None = None,
) -> torch.Tensor:
    """ClippedGossip (He, Karimireddy and Jaggi 2022) of [k, P], row 0 the node's own model.

    x_0 + sum_j w_j clip(x_j - x_0, tau) with a fixed `tau` or the adaptive radius of `delta`.
    """
    return aggregate(models, Aggregator("clipped", tau=tau, delta=delta), weights)


def clip_radius(distances: torch.Tensor, weights: torch.Tensor, delta: float) -> torch.Tensor:
    """Adaptive ClippedGossip radius per row of [n, m] neighbour distances and weights.

    The smallest distance tau such that the neighbours strictly farther than tau hold at most
    `delta` of the row's total weight (the weighted (1 - delta) quantile). Entries of weight 0
    never decide the radius. Returns [n] (0 for rows with no weight).
    """
    if distances.shape[1] == 0:
        return torch.zeros(distances.shape[0], dtype=distances.dtype)
    d, order = torch.sort(distances, dim=1)
    w = torch.gather(weights.to(torch.float64), 1, order)
    total = w.sum(dim=1, keepdim=True)
    farther = w.flip(1).cumsum(1).flip(1) - w  # weight strictly after each sorted position
    ok = farther <= delta * total * (1 + 1e-12)
    first = (~ok).sum(dim=1, keepdim=True).clamp_max(d.shape[1] - 1)
    return torch.gather(d, 1, first)[:, 0]


# ---- all nodes at once -------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbourhoods:
    """Padded neighbour table of N nodes: column 0 is the node itself.

    index [N, D] int64 (padding repeats the node's own index), weight [N, D] mixing weights
    (0 on padding), mask [N, D] bool (True where a real model).
    """

    index: torch.Tensor
    weight: torch.Tensor
    mask: torch.Tensor

    def counts(self) -> torch.Tensor:
        """Models per node, self included: [N]."""
        return self.mask.sum(dim=1)


def neighbourhoods(w: sp.spmatrix | np.ndarray) -> Neighbourhoods:
    """The neighbour table of a mixing matrix (row i: what node i receives, W_ij its weight)."""
    c = sp.csr_matrix(w, dtype=np.float64)
    c.eliminate_zeros()
    c.sort_indices()
    n = c.shape[0]
    rows = np.repeat(np.arange(n), np.diff(c.indptr))
    off = c.indices != rows
    r, col, val = rows[off], c.indices[off], c.data[off]
    deg = np.bincount(r, minlength=n)
    width = 1 + (int(deg.max()) if n else 0)
    first = np.concatenate([[0], np.cumsum(deg)[:-1]])
    pos = np.arange(len(r)) - first[r] + 1
    index = np.repeat(np.arange(n)[:, None], width, axis=1)
    index[r, pos] = col
    weight = np.zeros((n, width))
    weight[:, 0] = c.diagonal()
    weight[r, pos] = val
    mask = np.zeros((n, width), dtype=bool)
    mask[:, 0] = True
    mask[r, pos] = True
    return Neighbourhoods(torch.from_numpy(index), torch.from_numpy(weight).float(), torch.from_numpy(mask))


def robust_mix(
    x: torch.Tensor,
    table: Neighbourhoods,
    agg: Aggregator,
    sent: torch.Tensor | None = None,
    block: int | None = None,
    keep_short: bool = False,
) -> torch.Tensor:
    """New models [N, P] of all nodes: each aggregates itself with its neighbours' models.

    x [N, P] are the nodes' own models. `sent` [N, P] (default x) is what each node sends to
    all its neighbours: a simulator puts an attack (or the decoded compressed message) into its
    rows there. Works in blocks of `block` nodes (default: about 4 MiB of gathered models per
    block). With `keep_short`, a node with fewer models than `agg.min_models()` keeps its own
    model; else that is a GossipSettingError.
    """
    n, p = x.shape
    sent = x if sent is None else sent
    if sent.shape != x.shape:
        raise ValueError(f"sent has shape {tuple(sent.shape)}, x has {tuple(x.shape)}")
    width = table.index.shape[1]
    if block is None:
        block = max(1, BLOCK_BYTES // max(1, width * p * x.element_size()))
    out = torch.empty_like(x)
    for a in range(0, n, block):
        sl = slice(a, min(n, a + block))
        stack = gather(x, table, sl, sent)
        out[sl] = aggregate_stacked(stack, agg, table.weight[sl], table.mask[sl], node=a,
                                    keep_short=keep_short)
    return out


def gather(
    x: torch.Tensor, table: Neighbourhoods, rows: slice, sent: torch.Tensor | None = None
) -> torch.Tensor:
    """The neighbourhoods [n, D, P] of the nodes in `rows`: own model, then what each neighbour sent."""
    index = table.index[rows]
    stack = (x if sent is None else sent)[index]
    if sent is not None:
        stack[:, 0] = x[rows]
    return stack


def aggregate_stacked(
    stack: torch.Tensor,
    agg: Aggregator,
    weight: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    node: int | None = 0,
    keep_short: bool = False,
) -> torch.Tensor:
    """Aggregate n neighbourhoods [n, D, P] (slot 0 = own model) into [n, P].

    `weight` [n, D] mixing weights (uniform when None), `mask` [n, D] which slots hold a model
    (all when None; slot 0 must). `node` numbers the first row in error messages (None: a
    single node). A neighbourhood with fewer models than the rule needs is a GossipSettingError, or with
    `keep_short` gives its own model. A simulator with per-receiver attacks builds `stack`
    itself and calls this.
    """
    n, d, p = stack.shape
    if mask is None:
        mask = torch.ones(n, d, dtype=torch.bool)
    if not bool(mask[:, 0].all()):
        raise ValueError("slot 0 of every neighbourhood must hold the node's own model")
    counts = mask.sum(dim=1)
    if not keep_short:
        _check_enough(counts, agg, node)
    w = torch.ones(n, d, dtype=stack.dtype) if weight is None else weight.to(stack.dtype)
    w = torch.where(mask, w, torch.zeros((), dtype=w.dtype))
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("mixing weights must be finite and non-negative")
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), w)
    short = counts < agg.min_models()
    if not bool(short.any()):
        return agg.rule.combine(stack, w, mask, agg.values)
    out = stack[:, 0].clone()  # too few models for the rule: keep the own model
    ok = ~short
    if bool(ok.any()):
        out[ok] = agg.rule.combine(stack[ok], w[ok], mask[ok], agg.values)
    return out


def order_mean(stack: torch.Tensor, mask: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Per node and coordinate, the mean of the sorted values at positions lo_i..hi_i: [n, P].

    The order statistics behind trimmed mean and median; positions count only the models of
    `mask` (padding sorts last).
    """
    n, d, p = stack.shape
    rows = _sorted_rows(stack, mask)
    keep = (torch.arange(d)[None, :] >= lo[:, None]) & (torch.arange(d)[None, :] <= hi[:, None])
    out = torch.zeros(n, p, dtype=stack.dtype)
    zero = torch.zeros((), dtype=stack.dtype)
    for k in range(d):
        if bool(keep[:, k].any()):
            out += torch.where(keep[:, k, None], rows[k], zero)
    return out / (hi - lo + 1).to(stack.dtype)[:, None]


def _sorted_rows(stack: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """The D rows of each neighbourhood sorted per coordinate, padding (+inf) last: D x [n, P]."""
    d = stack.shape[1]
    inf = torch.tensor(float("inf"), dtype=stack.dtype)
    padded = stack if bool(mask.all()) else torch.where(mask[:, :, None], stack, inf)
    if d > NETWORK_LIMIT:
        return list(torch.sort(padded, dim=1).values.unbind(1))
    rows = list(padded.unbind(1))
    for i, j in sorting_network(d):
        rows[i], rows[j] = torch.minimum(rows[i], rows[j]), torch.maximum(rows[i], rows[j])
    return rows


@lru_cache(maxsize=64)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparator pairs (i, j), i < j, of Batcher's merge-exchange sort of n items.

    Knuth, The Art of Computer Programming vol. 3, section 5.2.2, Algorithm M. Applying
    (lo, hi) = (min, max) at each pair in order sorts any input ascending.
    """
    pairs: list[tuple[int, int]] = []
    if n < 2:
        return ()
    t = (n - 1).bit_length()
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while True:
            pairs += [(i, i + d) for i in range(n - d) if i & p == r]
            if q == p:
                break
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return tuple(pairs)


def _check_enough(counts: torch.Tensor, agg: Aggregator, node: int | None) -> None:
    need = agg.min_models()
    if need <= 1 or counts.numel() == 0:
        return
    low = counts < need
    if bool(low.any()):
        k = int(torch.nonzero(low)[0, 0])
        who = "the node" if node is None else f"node {node + k}"
        given = ", ".join(f"{key}={value}" for key, value in agg.params)
        raise GossipSettingError(f"{agg.name}{' with ' + given if given else ''} needs at least {need} "
                                 f"models (self and neighbours), {who} has {int(counts[k])}")
