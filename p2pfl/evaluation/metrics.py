"""Clinical metrics of a classifier's probabilities on labelled rows, computed by scikit-learn.

`clinical_metrics` is the full set (`p2pfl evaluate`, the model card, the cross-site report);
`training_metrics` the cheap subset a node (and the simulator) logs every round, in numpy. A
figure that is undefined on the rows (AUROC when a class is absent, sensitivity without
positives) is NaN, never an exception and never a printed warning. The expected calibration
error is the one figure scikit-learn lacks: 10 equal-width bins of the top-class probability
(Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    recall_score,
    roc_auc_score,
)

# The scalar figures, in table order, with the label a person reads; binary-only ones last.
LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "auroc": "AUROC",
    "average_precision": "Average precision",
    "brier": "Brier score",
    "ece": "Calibration error (ECE)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
}
BINARY_ONLY = frozenset({"sensitivity", "specificity"})
LOWER_IS_BETTER = frozenset({"brier", "ece"})  # for choosing a best round by a metric
ECE_BINS = 10
FEW_ROWS = 30  # fewer validation rows than this and warnings_for says the figures are noisy


def scalar_metrics(n_classes: int) -> tuple[str, ...]:
    """Names of the scalar figures `clinical_metrics` gives for `n_classes` classes."""
    return tuple(m for m in LABELS if n_classes == 2 or m not in BINARY_ONLY)


def predicted_classes(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The predicted class of each row: class 1 when probs[:, 1] >= threshold (binary), else argmax."""
    if probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


def clinical_metrics(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float | list]:
    """accuracy, balanced_accuracy, auroc, average_precision, brier, ece, sensitivity and
    specificity at `threshold` (binary only), threshold (binary only), confusion (true class by
    predicted class, classes 0..C-1), rows, class_counts."""
    y, probs = as_arrays(y, probs)
    n_classes = probs.shape[1]
    pred = predicted_classes(probs, threshold)
    present = _present(y, n_classes)
    out: dict[str, float | list] = {
        "accuracy": _quiet(accuracy_score, y, pred) if len(y) else np.nan,
        "balanced_accuracy": _quiet(balanced_accuracy_score, y, pred) if len(y) else np.nan,
        "auroc": _auroc(y, probs),
        "average_precision": _average_precision(y, probs),
        "brier": _brier(y, probs),
        "ece": float(expected_calibration_error(*calibration_inputs(y, probs))[0]) if len(y) else np.nan,
    }
    if n_classes == 2:
        out["sensitivity"] = _recall(y, pred, 1) if present[1] else np.nan
        out["specificity"] = _recall(y, pred, 0) if present[0] else np.nan
        out["threshold"] = float(threshold)
    out = {k: float(v) for k, v in out.items()}
    out["confusion"] = confusion_matrix(y, pred, labels=range(n_classes)).tolist() if len(y) else \
        [[0] * n_classes for _ in range(n_classes)]
    out["rows"] = len(y)
    out["class_counts"] = np.bincount(y, minlength=n_classes).tolist()
    return out


def training_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The per-round subset: accuracy, balanced_accuracy, auroc (NaN where undefined).

    Computed with numpy: scikit-learn's input checks cost more than the figures themselves on a
    validation split of a few hundred rows, every round. Accuracy and balanced accuracy are
    scikit-learn's bit for bit; AUROC is the rank statistic (Mann-Whitney U over n+ n-, ties
    counted half), the area scikit-learn's trapezoids give up to their rounding.
    """
    full = {"accuracy", "balanced_accuracy", "auroc"}
    y, probs = as_arrays(y, probs)
    if not len(y):
        return dict.fromkeys(sorted(full), np.nan)
    pred = predicted_classes(probs)
    return {"accuracy": float(np.mean(y == pred)), "balanced_accuracy": _balanced_accuracy(y, pred),
            "auroc": _rank_auroc(y, probs)}


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's balanced_accuracy_score: the mean recall over the classes of y (a class
    that is only predicted has no recall and is left out)."""
    labels = np.union1d(y, pred)
    k = len(labels)
    cells = np.bincount(np.searchsorted(labels, y) * k + np.searchsorted(labels, pred), minlength=k * k)
    confusion = cells.reshape(k, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.diag(confusion) / confusion.sum(axis=1)
    return float(np.mean(per_class[~np.isnan(per_class)]))


def _rank_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """As `_auroc` (binary on probs[:, 1], else one-vs-rest macro; NaN unless every class is
    present), from ranks."""
    n_classes = probs.shape[1]
    if not _present(y, n_classes).all():
        return np.nan
    if n_classes == 2:
        return _rank_auc(y == 1, probs[:, 1])
    return float(np.mean([_rank_auc(y == c, probs[:, c]) for c in range(n_classes)]))


def _rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(equal) / 2, both classes present."""
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    ranks = np.empty(len(score))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # tied rows: their mean rank
    n_pos = int(positive.sum())
    n_neg = len(score) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def warnings_for(y: np.ndarray, n_classes: int) -> list[str]:
    """What a person should know about a validation split before trusting its figures."""
    y = np.asarray(y)
    if not len(y):
        return ["validation split is empty: it has no metrics"]
    counts = np.bincount(y, minlength=n_classes)
    out = []
    if (counts > 0).sum() == 1:
        out.append(f"validation split has a single class (all {len(y)} rows are class {int(y[0])}): "
                   "its AUROC, sensitivity and specificity are undefined")
    elif (counts == 0).any():
        absent = ", ".join(str(c) for c in np.flatnonzero(counts == 0))
        out.append(f"validation split has no rows of class {absent}: its AUROC is undefined")
    if len(y) < FEW_ROWS:
        out.append(f"validation split has only {len(y)} rows (fewer than {FEW_ROWS}): its metrics are noisy")
    return out


def calibration_inputs(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: its ECE bin (0..9), top-class probability and whether the top class is right."""
    conf = probs.max(axis=1)
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, ECE_BINS - 1)  # bins (a, b]
    return bins, conf, (probs.argmax(axis=1) == y).astype(np.float64)


def expected_calibration_error(bins: np.ndarray, conf: np.ndarray, correct: np.ndarray,
                               weights: np.ndarray | None = None) -> np.ndarray:
    """ECE = sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)| (Guo et al. 2017).

    `weights` ([B, n], row multiplicities of B resamples; None: every row once) gives one ECE per
    resample: [B]. Per bin, |bin| / n * |acc - conf| = |sum of correct - sum of conf| / n.
    """
    w = np.ones((1, len(conf))) if weights is None else weights
    onehot = np.zeros((len(conf), ECE_BINS))
    onehot[np.arange(len(conf)), bins] = 1.0
    gap = w @ (onehot * (correct - conf)[:, None])  # [B, bins]: sum of (correct - conf) per bin
    return np.abs(gap).sum(axis=1) / w.sum(axis=1)


def as_arrays(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 [n] and probabilities as float64 [n, C]; ValueError when they do not fit."""
    y = np.asarray(y).astype(np.int64, casting="same_kind").reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] != len(y):
        raise ValueError(f"probs must be [rows={len(y)}, classes>=2], got {probs.shape}")
    if len(y) and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise ValueError(f"labels must be 0..{probs.shape[1] - 1}, got {y.min()}..{y.max()}")
    return y, probs


def _present(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y, minlength=n_classes) > 0


def _quiet(metric: Callable[..., float], *args, **kwargs) -> float:
    """A scikit-learn metric with its warnings (classes absent from y_true) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(*args, **kwargs)


def _auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: on probs[:, 1]; multi-class: one-vs-rest macro. NaN unless every class is present."""
    if not _present(y, probs.shape[1]).all():
        return np.nan
    if probs.shape[1] == 2:
        return _quiet(roc_auc_score, y, probs[:, 1])
    return _quiet(roc_auc_score, y, probs, multi_class="ovr", average="macro", labels=range(probs.shape[1]))


def _average_precision(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: of class 1 (NaN without positives); multi-class: one-vs-rest macro (NaN unless every
    class is present)."""
    present = _present(y, probs.shape[1])
    if probs.shape[1] == 2:
        return _quiet(average_precision_score, y, probs[:, 1]) if present[1] else np.nan
    if not present.all():
        return np.nan
    onehot = np.eye(probs.shape[1], dtype=np.int64)[y]
    return _quiet(average_precision_score, onehot, probs, average="macro")


def _brier(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: brier_score_loss on probs[:, 1]; multi-class: the mean over rows of the summed
    squared differences to the one-hot label."""
    if not len(y):
        return np.nan
    if probs.shape[1] == 2:
        return _quiet(brier_score_loss, y, probs[:, 1], pos_label=1)
    return _quiet(brier_score_loss, y, probs, labels=range(probs.shape[1]), scale_by_half=False)


def _recall(y: np.ndarray, pred: np.ndarray, label: int) -> float:
    return _quiet(recall_score, y, pred, pos_label=label, average="binary", zero_division=np.nan)
