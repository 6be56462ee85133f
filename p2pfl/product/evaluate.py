"""`p2pfl evaluate BUNDLE DATA`: the bundle's clinical figures on a labelled table, each with a
95% bootstrap interval (p2pfl.evaluation), as a table or JSON, with ROC and calibration plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.evaluation import as_json, bootstrap_intervals, format_table
from p2pfl.evaluation.metrics import clinical_metrics, warnings_for
from p2pfl.product.bundle import Bundle
from p2pfl.product.predict import Predictions


@dataclass
class Evaluation:
    """The figures of a bundle on some rows, their intervals and what to warn about."""

    metrics: dict
    intervals: dict
    classes: list[str]
    warnings: list[str]
    level: float = 0.95

    def table(self) -> str:
        return format_table(self.metrics, self.intervals, self.level, self.classes)

    def json(self) -> dict:
        return {**as_json(self.metrics, self.intervals, self.level), "classes": self.classes,
                "warnings": self.warnings}


def evaluate(bundle: Bundle, pred: Predictions, threshold: float = 0.5, resamples: int = 1000,
             seed: int = 0) -> Evaluation:
    """Figures of `pred` (the bundle's predictions on a table with its label column)."""
    if pred.y is None:
        raise UserError(f"the data has no label column {bundle.label_column!r}: evaluate compares "
                        "predictions with the true labels (predict needs none)")
    if not 0 < threshold < 1:
        raise UserError(f"--threshold must be between 0 and 1, got {threshold}")
    metrics = clinical_metrics(pred.y, pred.probs, threshold)
    intervals = bootstrap_intervals(pred.y, pred.probs, threshold, resamples=resamples, seed=seed)
    return Evaluation(metrics, intervals, list(bundle.classes), warnings_for(pred.y, len(bundle.classes)))


def write_plots(bundle: Bundle, pred: Predictions, folder: Path) -> list[Path]:
    """roc.png and calibration.png in `folder`."""
    from p2pfl.evaluation.plots import calibration_plot, roc_plot

    folder.mkdir(parents=True, exist_ok=True)
    return [roc_plot(pred.y, pred.probs, bundle.classes, folder / "roc.png"),
            calibration_plot(pred.y, pred.probs, bundle.classes, folder / "calibration.png")]
