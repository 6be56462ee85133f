"""ROC and calibration curves as PNG files (matplotlib's Agg canvas: no display, no pyplot state).

Binary: the curve of class 1. Multi-class: one-vs-rest, one curve per class. A class whose curve
is undefined on the rows (no positives, or no negatives for ROC) is named in the legend, not drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from p2pfl.evaluation.metrics import ECE_BINS, as_arrays


def roc_plot(y: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: Path | str) -> Path:
    """Write the ROC curve(s) with their AUROC to `path` (PNG); returns the path."""
    y, probs = as_arrays(y, probs)
    fig, ax = _axes()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    for k in _curve_classes(probs):
        positive = (y == k).astype(np.int64)
        if positive.min(initial=1) == positive.max(initial=0):
            ax.plot([], [], label=f"{classes[k]}: undefined (one class in the rows)")
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        ax.plot(fpr, tpr, label=f"{classes[k]} (AUROC {roc_auc_score(positive, probs[:, k]):.3f})")
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
           title="ROC curve" + ("s, one vs rest" if probs.shape[1] > 2 else ""), xlim=(0, 1), ylim=(0, 1.01))
    return _save(fig, ax, path, legend="lower right")


def calibration_plot(y: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: Path | str) -> Path:
    """Write the reliability diagram(s) (10 equal-width bins) to `path` (PNG); returns the path."""
    y, probs = as_arrays(y, probs)
    fig, ax = _axes()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for k in _curve_classes(probs):
        positive = (y == k).astype(np.int64)
        if not positive.any():
            ax.plot([], [], label=f"{classes[k]}: undefined (no rows of the class)")
            continue
        observed, predicted = calibration_curve(positive, probs[:, k], n_bins=ECE_BINS, pos_label=1)
        ax.plot(predicted, observed, "o-", label=str(classes[k]))
    ax.set(xlabel="predicted probability", ylabel="observed frequency",
           title="Calibration" + (", one vs rest" if probs.shape[1] > 2 else ""), xlim=(0, 1), ylim=(0, 1.01))
    return _save(fig, ax, path, legend="upper left")


def _curve_classes(probs: np.ndarray) -> range:
    return range(1, 2) if probs.shape[1] == 2 else range(probs.shape[1])


def _axes():
    fig = Figure(figsize=(5.5, 5), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, ax, path: Path | str, legend: str) -> Path:
    ax.legend(loc=legend, fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
