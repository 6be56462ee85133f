"""Spectral gap of mixing matrices, found deterministically and with bounded work at any size.

For a symmetric W the gap is 1 - max(|lambda_2|, |lambda_n|); for a random or time-varying
sequence, 1 - sqrt(rho) with rho = lambda_max(E[M^T M]), M = (I - J) W (I - J) and J the
averaging matrix (per round: 1 - rho^(1/(2k)) for a period of k rounds applied in order). Found:

- dense (numpy eigvalsh) up to DENSE_LIMIT nodes: exact to rounding;
- from the Fourier transform of the first row when W is circulant (W_ij depends only on
  (j - i) mod n: ring, exponential graph): exact to rounding at any size, O(n log n);
- otherwise by Lanczos from a fixed start vector on the mean-free subspace, without
  reorthogonalisation: three vectors of memory and at most MAX_PRODUCTS sparse products. It
  stops when the residual of the extreme Ritz pair is at most TOLERANCE. Ritz values never
  exceed the operator's extreme eigenvalues, so a run cut off at the cap gives an upper bound
  on the gap (`Gap.converged` False, with its residual) instead of minutes of work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh_tridiagonal

DENSE_LIMIT = 1500  # dense eigendecomposition up to this many nodes
MAX_PRODUCTS = 3000  # sparse matrix-vector products one Lanczos run may use
MIN_STEPS = 64  # Lanczos steps allowed however many products one step takes
TOLERANCE = 1e-10  # residual ||M y - theta y|| at which a Ritz value counts as converged
CHECK_EVERY = 16  # Lanczos steps between convergence checks
CIRCULANT_TOLERANCE = 1e-12  # rows may differ by rounding (diagonals are 1 - a row sum)


@dataclass(frozen=True)
class Gap:
    """A spectral gap and how it was found.

    `method`: "dense", "circulant" or "lanczos". `converged` False only for a Lanczos run cut
    off at MAX_PRODUCTS: `value` is then an upper bound on the gap, and `residual` says how far
    from an eigenvalue the Ritz value it comes from may still be.
    """

    value: float
    method: str
    converged: bool = True
    residual: float = 0.0
    steps: int = 0

    def describe(self) -> str:
        """'lanczos, converged in 48 steps', or what an unconverged value means."""
        if self.method != "lanczos":
            return f"{self.method} (exact)"
        if self.converged:
            return f"lanczos, converged in {self.steps} steps"
        return (f"lanczos, not converged in {self.steps} steps: an upper bound "
                f"(residual {self.residual:.1e})")


def symmetric_gap(w: sp.spmatrix | np.ndarray) -> Gap:
    """1 - max(|lambda_2|, |lambda_n|) of a symmetric mixing matrix."""
    w = sp.csr_matrix(w)
    n = w.shape[0]
    if n <= 1:
        return Gap(1.0, "dense")
    if n <= DENSE_LIMIT:
        ev = np.linalg.eigvalsh(w.toarray())
        return Gap(float(max(0.0, 1.0 - max(abs(ev[-2]), abs(ev[0])))), "dense")
    first = circulant_row(w)
    if first is not None:
        ev = np.fft.rfft(first).real[1:]  # eigenvalue 0 is the row sum, the consensus direction
        return Gap(float(max(0.0, 1.0 - np.abs(ev).max())), "circulant")

    def deflated(v: np.ndarray) -> np.ndarray:
        out = w @ v
        return out - out.mean()

    return _lanczos_gap(deflated, n, steps=MAX_PRODUCTS, rate=lambda top: top)


def rate_gap(ws: list[sp.spmatrix], product: bool = False) -> Gap:
    """Per-round gap of a random or time-varying mixing sequence (see the module docstring);
    with `product`, `ws` is one period applied in order (W_k ... W_1)."""
    n = ws[0].shape[0]
    if n <= 1:
        return Gap(1.0, "dense")
    mats = [sp.csr_matrix(w) for w in ws]
    mats_t = [m.T for m in mats]
    power = 1.0 / (2 * len(mats) if product else 2)

    def center(v: np.ndarray) -> np.ndarray:
        return v - v.mean()

    def matvec(v: np.ndarray) -> np.ndarray:
        v = center(np.asarray(v, dtype=np.float64).ravel())
        if product:
            for m in mats:
                v = center(m @ v)
            for m in reversed(mats_t):
                v = center(m @ v)
            return v
        acc = np.zeros(n)
        for m, mt in zip(mats, mats_t, strict=True):
            acc += mt @ center(m @ v)
        return center(acc / len(mats))

    def rate(rho: float) -> float:
        return min(max(rho, 0.0), 1.0) ** power

    if n <= DENSE_LIMIT:
        a = np.column_stack([matvec(e) for e in np.eye(n)])
        return Gap(float(1.0 - rate(float(np.linalg.eigvalsh((a + a.T) / 2)[-1]))), "dense")
    if np.linalg.norm(matvec(np.random.default_rng(0).standard_normal(n))) < 1e-9:
        return Gap(1.0, "dense")  # the sequence averages exactly (one-peer exponential, n a power of two)
    return _lanczos_gap(matvec, n, steps=max(MIN_STEPS, MAX_PRODUCTS // (2 * len(mats))), rate=rate)


def circulant_row(w: sp.csr_matrix) -> np.ndarray | None:
    """The first row of W (dense, length n) when W_ij depends only on (j - i) mod n, else None."""
    n = w.shape[0]
    counts = np.diff(w.indptr)
    if w.nnz == 0 or (counts != counts[0]).any():
        return None
    k = int(counts[0])
    offsets = ((w.indices.reshape(n, k) - np.arange(n)[:, None]) % n)
    order = np.argsort(offsets, axis=1, kind="stable")
    offsets = np.take_along_axis(offsets, order, axis=1)
    values = np.take_along_axis(w.data.reshape(n, k), order, axis=1)
    if (offsets != offsets[0]).any() or np.abs(values - values[0]).max() > CIRCULANT_TOLERANCE:
        return None
    first = np.zeros(n)
    first[offsets[0]] = values[0]
    return first


def _lanczos_gap(matvec: Callable[[np.ndarray], np.ndarray], n: int, steps: int,
                 rate: Callable[[float], float]) -> Gap:
    """1 - rate(|theta|) for the Ritz value theta of largest magnitude of the symmetric
    operator `matvec` (which keeps vectors mean-free), after at most `steps` Lanczos steps."""
    v = np.random.default_rng(0x5EC7).standard_normal(n)  # fixed: the same answer every call
    v -= v.mean()
    v /= np.linalg.norm(v)
    v_prev = np.zeros(n)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    top, residual = 0.0, math.inf
    for step in range(1, min(steps, n) + 1):
        u = matvec(v)
        alpha = float(v @ u)
        u -= alpha * v
        u -= beta * v_prev
        beta = float(np.linalg.norm(u))
        alphas.append(alpha)
        betas.append(beta)
        invariant = beta <= 1e-14 * max(1.0, abs(alpha))
        if invariant or step % CHECK_EVERY == 0 or step == min(steps, n):
            top, residual = _extreme_ritz(alphas, betas)
            if invariant:
                residual = 0.0
            if residual <= TOLERANCE:
                return Gap(float(max(0.0, 1.0 - rate(top))), "lanczos", True, residual, step)
        v_prev, v = v, u / beta
    return Gap(float(max(0.0, 1.0 - rate(top))), "lanczos", False, residual, len(alphas))


def _extreme_ritz(alphas: list[float], betas: list[float]) -> tuple[float, float]:
    """|theta| of the Ritz value of largest magnitude of the Lanczos tridiagonal, and its
    residual estimate beta_m |s_m| (s the eigenvector of T, beta_m the last coefficient)."""
    m = len(alphas)
    d, e = np.array(alphas), np.array(betas[:-1])
    best, residual = -1.0, math.inf
    for index in {0, m - 1}:
        theta, s = eigh_tridiagonal(d, e, select="i", select_range=(index, index))
        if abs(theta[0]) > best:
            best, residual = abs(float(theta[0])), abs(betas[-1] * float(s[-1, 0]))
    return best, residual
