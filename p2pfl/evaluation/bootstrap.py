"""Percentile bootstrap intervals of the clinical metrics (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13).

A resample of the n rows is a vector of row multiplicities (how often each row was drawn), so B
resamples are one [B, n] weight matrix and every figure of every resample is a few matrix
products: 1000 resamples of 10,000 rows take about a second, where a scikit-learn call per
resample and metric would take half a minute. The weighted forms below are the same figures as
`clinical_metrics` on the resampled rows (tests/evaluation/test_bootstrap.py checks each
against scikit-learn); a resample where a figure is undefined (one class) is skipped for it.
"""

from __future__ import annotations

import numpy as np

from p2pfl.evaluation.metrics import (
    as_arrays,
    calibration_inputs,
    expected_calibration_error,
    predicted_classes,
    scalar_metrics,
)

CHUNK_CELLS = 2_000_000  # resamples x rows drawn at once: bounds the memory to tens of MB


def bootstrap_intervals(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5, resamples: int = 1000,
                        level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """(low, high) of every scalar metric of `clinical_metrics` over `resamples` row resamples
    (numpy Generator seeded with `seed`); (nan, nan) where no resample defines the metric."""
    y, probs = as_arrays(y, probs)
    names = scalar_metrics(probs.shape[1])
    if not len(y) or resamples < 1:
        return dict.fromkeys(names, (np.nan, np.nan))
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // len(y))
    draws = {m: [] for m in names}
    for start in range(0, resamples, chunk):
        weights = _weights(rng, min(chunk, resamples - start), len(y))
        for m, values in resampled_metrics(y, probs, weights, threshold).items():
            draws[m].append(values)
    tail = 100 * (1 - level) / 2
    out = {}
    for m in names:
        values = np.concatenate(draws[m])
        values = values[~np.isnan(values)]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
        out[m] = (float(low), float(high))
    return out


def resampled_metrics(y: np.ndarray, probs: np.ndarray, weights: np.ndarray,
                      threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Every scalar metric of each resample ([B, n] row multiplicities): name -> [B], NaN where
    the resample leaves it undefined."""
    n_classes = probs.shape[1]
    onehot = np.eye(n_classes)[y]  # [n, C]
    pred = predicted_classes(probs, threshold)
    rows = weights.sum(axis=1)
    counts = weights @ onehot  # [B, C]: rows of each true class
    hits = weights @ (onehot * (pred == y)[:, None])  # [B, C]: rows of each class predicted right
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hits / counts  # NaN for a class the resample lacks
    all_present = (counts > 0).all(axis=1)
    out = {
        "accuracy": hits.sum(axis=1) / rows,
        "balanced_accuracy": np.nanmean(recall, axis=1),  # over the classes present, as scikit-learn
        "ece": expected_calibration_error(*calibration_inputs(y, probs), weights=weights),
    }
    if n_classes == 2:
        out["sensitivity"], out["specificity"] = recall[:, 1], recall[:, 0]
        auroc, ap = _ranking_metrics(probs[:, 1], y == 1, weights)
        out["auroc"] = np.where(all_present, auroc, np.nan)
        out["average_precision"] = np.where(counts[:, 1] > 0, ap, np.nan)
        out["brier"] = weights @ (probs[:, 1] - y) ** 2 / rows
    else:
        auroc, ap = np.mean([_ranking_metrics(probs[:, k], y == k, weights) for k in range(n_classes)],
                            axis=0)  # one-vs-rest, macro
        out["auroc"] = np.where(all_present, auroc, np.nan)
        out["average_precision"] = np.where(all_present, ap, np.nan)
        out["brier"] = weights @ ((probs - onehot) ** 2).sum(axis=1) / rows
    return {m: out[m] for m in scalar_metrics(n_classes)}


def _weights(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """[b, n] multiplicities of b resamples of n rows drawn with replacement."""
    drawn = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _score_groups(score: np.ndarray, positive: np.ndarray,
                  weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives of each group of tied scores, lowest score first: [G, B]
    each (rows-first, so the sums run over contiguous memory)."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = weights.T[order]  # [n, B]
    pos = np.add.reduceat(w * positive[order, None], starts, axis=0)
    return pos, np.add.reduceat(w, starts, axis=0) - pos


def _ranking_metrics(score: np.ndarray, positive: np.ndarray,
                     weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of `score` for `positive` rows, per resample: [B] each, NaN
    where undefined.

    AUROC: the chance a positive outscores a negative, ties counting half (the trapezoidal area
    roc_auc_score computes). Average precision: over thresholds from the highest score down, the
    sum of (recall step) x precision, without interpolation, as average_precision_score.
    """
    pos, neg = _score_groups(score, positive, weights)
    n_pos, n_neg = pos.sum(axis=0), neg.sum(axis=0)
    below = np.cumsum(neg, axis=0) - neg  # negatives scoring strictly lower than the group
    tp = n_pos - np.cumsum(pos, axis=0) + pos  # positives scoring at least the group's score
    fp = n_neg - below
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (pos * (below + neg / 2)).sum(axis=0) / (n_pos * n_neg)
        precision = np.where(pos > 0, tp / (tp + fp), 0.0)
        return auroc, (pos * precision).sum(axis=0) / n_pos
