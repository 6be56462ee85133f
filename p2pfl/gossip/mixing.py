"""Mixing matrices for gossip averaging (their spectral gap: `p2pfl.gossip.spectral`).

Row i of a mixing matrix W holds the weights node i gives to itself and to the models it
receives: x_i <- sum_j W_ij x_j. Metropolis-Hastings and max-degree weights are symmetric and
doubly stochastic on any undirected graph (Xiao and Boyd, "Fast linear iterations for
distributed averaging", 2004); uniform weights 1/(deg+1) are row-stochastic, and doubly
stochastic on regular graphs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

SCHEMES = ("metropolis_hastings", "max_degree", "uniform")


def undirected_arrays(n: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both directions of each undirected edge (no self loops) and the degree of every node."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    deg = np.bincount(src, minlength=n)
    return src, dst, deg


def mixing_matrix(n: int, edges: np.ndarray, scheme: str = "metropolis_hastings") -> sp.csr_matrix:
    """Mixing matrix of an undirected graph given as an [E, 2] array of node pairs."""
    src, dst, deg = undirected_arrays(n, edges)
    if scheme == "metropolis_hastings":
        w = 1.0 / (1.0 + np.maximum(deg[src], deg[dst]))
    elif scheme == "max_degree":
        w = np.full(len(src), 1.0 / (1.0 + (deg.max() if n else 0)))
    elif scheme == "uniform":
        w = 1.0 / (1.0 + deg[dst])
    else:
        raise ValueError(f"unknown mixing scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    # Entry (dst, src): the receiver dst weighs the model of src.
    off = sp.csr_matrix((w, (dst, src)), shape=(n, n))
    diag = 1.0 - np.asarray(off.sum(axis=1)).ravel()
    return (off + sp.diags(diag)).tocsr()


def receiver_average(n: int, src: np.ndarray, dst: np.ndarray) -> sp.csr_matrix:
    """Row-stochastic W for a directed round: each node averages itself with what it received."""
    indeg = np.bincount(dst, minlength=n)
    w = 1.0 / (1.0 + indeg[dst])
    off = sp.csr_matrix((w, (dst, src)), shape=(n, n))
    return (off + sp.diags(1.0 / (1.0 + indeg))).tocsr()


# Spectral gaps at or below this are rounding error, not mixing: the eigensolvers return up to
# ~1e-14 for disconnected graphs (exactly 0), while a connected ring of 20,000 nodes has 3e-8.
GAP_TOLERANCE = 1e-12


def predicted_rounds(gap: float, factor: float = 1000.0) -> float:
    """Rounds for consensus error to shrink by `factor`: ln(factor) / gap.

    inf ("never") when the gap is at most GAP_TOLERANCE, as for a disconnected graph.
    """
    return math.log(factor) / gap if gap > GAP_TOLERANCE else math.inf


def renormalisation(total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one rule for mixing weights over the models that arrived (own model included).

    A node whose present weights sum to `total` multiplies them by 1 / total, so they sum to
    one; a node with no weight at all (total <= 0: no self weight and nothing heard) keeps its
    own model (own weight 1, others 0). For [N] totals: (factor [N], keeps_own [N] bool).
    """
    total = np.asarray(total, dtype=np.float64)
    keeps_own = total <= 0
    return np.where(keeps_own, 0.0, 1.0 / np.where(keeps_own, 1.0, total)), keeps_own


def renormalised_row(raw: Sequence[float]) -> tuple[float, ...]:
    """One node's weights re-normalised by `renormalisation`: `raw` own weight first, then those
    of the models that arrived."""
    factor, keeps_own = renormalisation(np.array([sum(raw)]))
    out = [float(w) * float(factor[0]) for w in raw]
    if keeps_own[0]:
        out[0] = 1.0
    return tuple(out)


def renormalised_rows(m: sp.spmatrix) -> sp.csr_matrix:
    """Every node at once: row i of `m` holds node i's weights of what arrived (own on the
    diagonal), re-normalised by `renormalisation`; indices sorted."""
    c = sp.csr_matrix(m, dtype=np.float64)
    factor, keeps_own = renormalisation(np.asarray(c.sum(axis=1)).ravel())
    out = sp.diags(factor) @ c
    if keeps_own.any():
        out = out + sp.diags(keeps_own.astype(np.float64))
    out = sp.csr_matrix(out)
    out.sort_indices()
    return out


def to_torch(w: sp.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse CSR tensor."""
    c = sp.csr_matrix(w)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(c.indptr.astype(np.int64)),
            torch.from_numpy(c.indices.astype(np.int64)),
            torch.from_numpy(c.data).to(dtype),
            size=c.shape,
            check_invariants=False,
        )


def weighted_average(
    tensors: list[torch.Tensor], weights: list[float] | torch.Tensor
) -> torch.Tensor:
    """sum_k weights[k] * tensors[k], with weights re-normalised to sum to one."""
    if not tensors:
        raise ValueError("nothing to average")
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.numel() != len(tensors) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative, one per tensor, not all zero")
    w = w / w.sum()
    out = torch.zeros_like(tensors[0])
    for wk, t in zip(w.tolist(), tensors, strict=True):
        out.add_(t, alpha=wk)
    return out


def weighted_average_state(
    states: list[dict[str, torch.Tensor]], weights: list[float]
) -> dict[str, torch.Tensor]:
    """Name-by-name weighted average of state dicts with the same keys (weights re-normalised)."""
    if not states:
        raise ValueError("nothing to average")
    return {name: weighted_average([s[name] for s in states], weights) for name in states[0]}
