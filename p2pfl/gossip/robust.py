"""Robust aggregation of a node's own model with the models its neighbours sent.

A neighbourhood is a [k, P] tensor whose row 0 is the node's own model and rows 1.. are what
arrived. Four rules:

- `mean`: the mixing-weighted average (plain gossip, D-PSGD).
- `trimmed_mean:b=B`: per coordinate, drop the B largest and B smallest of the k values and
  average the rest (Yin et al., "Byzantine-robust distributed learning", ICML 2018, used
  per neighbourhood as in decentralized robust consensus). Needs k >= 2B + 1.
- `median`: per coordinate, the median of the k values (mean of the two middle ones when k
  is even).
- `clipped`: self-centred clipping, ClippedGossip (He, Karimireddy and Jaggi, "Byzantine-robust
  decentralized learning via ClippedGossip", 2022):
  x_i <- x_i + sum_j w_ij clip(x_j - x_i, tau_i), clip(z, tau) = z * min(1, tau / ||z||).
  Either a fixed radius (`clipped:tau=T`), or the adaptive radius `clipped:delta=D` (default
  D = 0.1): tau_i is the smallest distance ||x_j - x_i|| such that the neighbours farther than
  tau_i hold at most a fraction D of node i's neighbour weight, i.e. the weighted (1 - D)
  quantile of the distances. This is our reading of the paper's adaptive rule, which sizes
  tau_i by the neighbour weight that may be Byzantine (delta_i there); the exact formula here
  is ours. Its guarantee: if the attackers hold at most D of the neighbour weight, tau_i is
  at most the distance to the farthest honest neighbour.

Trimmed mean and median ignore the mixing weights (every model counts once); mean and
clipped use them, re-normalised over the models present. Models must be finite (the daemon's
update checks reject others); +-inf is ordered like any other value, NaN is not supported.

Batched form for the simulator: every node's neighbourhood is a row of a padded index table
[N, D] (column 0 = the node itself, padding points at the node itself and is masked out), built
once per mixing matrix by `neighbourhoods`. `robust_mix` gathers blocks of nodes into
[n, D, P] tensors (about 4 MiB each, so they stay in cache) and aggregates each block with
pure elementwise tensor operations: the per-coordinate order statistics come from a Batcher
merge-exchange sorting network over the D rows (O(D log^2 D) `minimum`/`maximum` calls on
[n, P] slices). For N = 1,000 nodes of degree 10 and P = 2,000 on one CPU thread that is
about 80-90 ms per round for median or trimmed mean (torch.sort along the short dimension
alone took about 370 ms) and 30-40 ms for clipping, against 8 ms for the plain sparse mean.
Wide neighbourhoods (D > 32) use `torch.sort`. Padding is +inf before sorting, so with
c_i real models the sorted real values sit in positions 0..c_i - 1 and variable degrees
need no special case. Clipping needs only the distances and one batched matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.spec import is_number, key_values, number

AGGREGATORS = ("mean", "trimmed_mean", "median", "clipped")

NETWORK_LIMIT = 32  # sort neighbourhoods of at most this many models with a sorting network
BLOCK_BYTES = 4 << 20  # size of one gathered [n, D, P] block in robust_mix


@dataclass(frozen=True)
class Aggregator:
    """A validated aggregation rule: its name and parameters. Build with `parse_aggregator`."""

    name: str = "mean"
    b: int = 0  # trimmed_mean: how many values to drop at each end
    tau: float | None = None  # clipped: fixed radius
    delta: float | None = None  # clipped: fraction of neighbour weight beyond the adaptive radius

    def __post_init__(self) -> None:
        if self.name not in AGGREGATORS:
            raise GossipSettingError(f"unknown aggregator {self.name!r}; choose one of "
                                     f"{', '.join(AGGREGATORS)}")
        if self.name == "trimmed_mean":
            if isinstance(self.b, bool) or not isinstance(self.b, int) or self.b < 1:
                raise GossipSettingError(f"trimmed_mean: b must be a positive integer, got {self.b!r}")
        elif self.b:
            raise GossipSettingError(f"aggregator {self.name} does not take b")
        if self.name == "clipped":
            if (self.tau is None) == (self.delta is None):
                raise GossipSettingError("clipped: give exactly one of tau (fixed radius) or delta "
                                         "(adaptive)")
            if self.tau is not None and not (is_number(self.tau) and 0 < self.tau < float("inf")):
                raise GossipSettingError(f"clipped: tau must be a positive number, got {self.tau!r}")
            if self.delta is not None and not (is_number(self.delta) and 0 <= self.delta < 1):
                raise GossipSettingError(f"clipped: delta must be a number in [0, 1), got {self.delta!r}")
        elif self.tau is not None or self.delta is not None:
            raise GossipSettingError(f"aggregator {self.name} does not take tau or delta")

    def min_models(self) -> int:
        """Fewest models (self included) the rule can combine: 2b + 1 for trimmed_mean, else 1."""
        return 2 * self.b + 1 if self.name == "trimmed_mean" else 1

    def __str__(self) -> str:
        if self.name == "trimmed_mean":
            return f"trimmed_mean:b={self.b}"
        if self.name == "clipped":
            return f"clipped:tau={self.tau:g}" if self.tau is not None else f"clipped:delta={self.delta:g}"
        return self.name


def parse_aggregator(spec: str) -> Aggregator:
    """'mean', 'median', 'trimmed_mean:b=1', 'clipped:delta=0.1' or 'clipped:tau=0.5'."""
    name, _, rest = str(spec).strip().partition(":")
    name = name.strip()
    if name not in AGGREGATORS:
        raise GossipSettingError(f"unknown aggregator {name!r}; choose one of {', '.join(AGGREGATORS)}")
    params = key_values(spec, rest)
    allowed = {"mean": (), "median": (), "trimmed_mean": ("b",), "clipped": ("tau", "delta")}[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise GossipSettingError(f"aggregator {name} does not take {', '.join(unknown)} "
                        f"(takes: {', '.join(allowed) or 'none'})")
    if name == "trimmed_mean":
        text = params.get("b", "1")
        try:
            b = int(text)
        except ValueError:
            raise GossipSettingError(f"trimmed_mean: b must be a positive integer, got {text!r}") from None
        return Aggregator(name, b=b)
    if name == "clipped":
        if not params:
            return Aggregator(name, delta=0.1)
        values = {key: number(f"clipped: {key}", text) for key, text in params.items()}
        return Aggregator(name, tau=values.get("tau"), delta=values.get("delta"))
    return Aggregator(name)


# ---- one node ----------------------------------------------------------------------------------


def aggregate(models: torch.Tensor, agg: Aggregator, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Combine one node's neighbourhood [k, P] (row 0 = own model) into its new model [P].

    `weights` [k] are the mixing weights (self first), re-normalised over the k rows; uniform
    when None. Used by mean and clipped; trimmed mean and median count every model once.
    """
    if models.dim() != 2 or models.shape[0] < 1:
        raise ValueError(f"models must be a [k, P] tensor with k >= 1, got shape {tuple(models.shape)}")
    w = None if weights is None else torch.as_tensor(weights, dtype=models.dtype).reshape(1, -1)
    if w is not None and w.shape[1] != models.shape[0]:
        raise ValueError(f"{w.shape[1]} weights for {models.shape[0]} models")
    return aggregate_stacked(models[None], agg, w, None, node=None)[0]


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
) -> torch.Tensor:
    """New models [N, P] of all nodes: each aggregates itself with its neighbours' models.

    x [N, P] are the nodes' own models. `sent` [N, P] (default x) is what each node sends to
    all its neighbours: a simulator puts an attack into the rows of malicious nodes there.
    Works in blocks of `block` nodes (default: about 4 MiB of gathered models per block).
    """
    n, p = x.shape
    sent = x if sent is None else sent
    if sent.shape != x.shape:
        raise ValueError(f"sent has shape {tuple(sent.shape)}, x has {tuple(x.shape)}")
    _check_enough(table.counts(), agg, node=0)
    width = table.index.shape[1]
    if block is None:
        block = max(1, BLOCK_BYTES // max(1, width * p * x.element_size()))
    out = torch.empty_like(x)
    for a in range(0, n, block):
        sl = slice(a, min(n, a + block))
        stack = gather(x, table, sl, sent)
        out[sl] = aggregate_stacked(stack, agg, table.weight[sl], table.mask[sl], node=a)
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
) -> torch.Tensor:
    """Aggregate n neighbourhoods [n, D, P] (slot 0 = own model) into [n, P].

    `weight` [n, D] mixing weights (uniform when None), `mask` [n, D] which slots hold a model
    (all when None; slot 0 must). `node` numbers the first row in error messages (None: a
    single node). A simulator with per-receiver attacks builds `stack` itself and calls this.
    """
    n, d, p = stack.shape
    if mask is None:
        mask = torch.ones(n, d, dtype=torch.bool)
    if not bool(mask[:, 0].all()):
        raise ValueError("slot 0 of every neighbourhood must hold the node's own model")
    counts = mask.sum(dim=1)
    _check_enough(counts, agg, node)
    if agg.name in ("trimmed_mean", "median"):
        return _order_mean(stack, mask, counts, agg)
    w = torch.ones(n, d, dtype=stack.dtype) if weight is None else weight.to(stack.dtype)
    w = torch.where(mask, w, torch.zeros((), dtype=w.dtype))
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("mixing weights must be finite and non-negative")
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), w)
    if agg.name == "mean":
        return torch.bmm(w[:, None, :], stack)[:, 0]
    own = stack[:, 0]
    if d == 1:
        return own.clone()
    diffs = stack[:, 1:] - own[:, None]
    dist = torch.linalg.vector_norm(diffs, dim=2)
    wn = w[:, 1:]
    if agg.tau is not None:
        tau = torch.full((n,), float(agg.tau), dtype=dist.dtype)
    else:
        tau = clip_radius(dist, wn, float(agg.delta)).to(dist.dtype)
    tau = tau[:, None]
    scale = torch.where(dist > tau, tau / dist.clamp_min(torch.finfo(dist.dtype).tiny), torch.ones_like(dist))
    return own + torch.bmm((wn * scale)[:, None, :], diffs)[:, 0]


def _order_mean(
    stack: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, agg: Aggregator
) -> torch.Tensor:
    """Mean of the sorted positions [lo_i, hi_i] per node and coordinate (trimmed mean, median)."""
    n, d, p = stack.shape
    if agg.name == "trimmed_mean":
        lo = torch.full_like(counts, agg.b)
        hi = counts - agg.b - 1
    else:
        lo = (counts - 1) // 2
        hi = counts // 2
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
        raise GossipSettingError(f"trimmed_mean with b={agg.b} needs at least {need} models (self "
                                 f"and neighbours), "
                        f"{who} has {int(counts[k])}")
