"""The clinical metrics for a person (a plain-text table) and for a program (JSON-safe dict)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from p2pfl.evaluation.metrics import LABELS

Intervals = Mapping[str, tuple[float, float]]


def format_table(metrics: Mapping, intervals: Intervals | None = None, level: float = 0.95,
                 classes: Sequence[str] | None = None) -> str:
    """One figure per line ("AUROC  0.912  (0.871 - 0.948)"), then the confusion matrix."""
    intervals = intervals or {}
    names = [m for m in LABELS if m in metrics]
    labels = {m: _label(m, metrics) for m in names}
    width = max(len(label) for label in labels.values())
    lines = [f"{'Rows':<{width}}  {metrics['rows']}",
             f"{'Rows per class':<{width}}  {', '.join(map(str, metrics['class_counts']))}"]
    if intervals:
        lines.append(f"{'':<{width}}  {'value':<9}  {level:.0%} bootstrap interval")
    for m in names:
        value = _number(metrics[m])
        low, high = intervals.get(m, (math.nan, math.nan))
        ci = f"  ({_number(low)} - {_number(high)})" if m in intervals and not math.isnan(low) else ""
        lines.append(f"{labels[m]:<{width}}  {value:<9}{ci}".rstrip())
    return "\n".join(lines + _confusion_lines(metrics["confusion"], classes))


def as_json(metrics: Mapping, intervals: Intervals | None = None, level: float = 0.95) -> dict:
    """{"rows", "class_counts", "confusion", "threshold" (binary), "level", "metrics": {name:
    {"value", "low", "high"}}}, with null for an undefined figure (JSON has no NaN)."""
    intervals = intervals or {}
    out = {"rows": metrics["rows"], "class_counts": list(metrics["class_counts"]),
           "confusion": [list(r) for r in metrics["confusion"]]}
    if "threshold" in metrics:
        out["threshold"] = metrics["threshold"]
    if intervals:
        out["level"] = level
    figures = {}
    for m in (m for m in LABELS if m in metrics):
        figures[m] = {"value": _finite(metrics[m])}
        if m in intervals:
            figures[m]["low"], figures[m]["high"] = (_finite(v) for v in intervals[m])
    out["metrics"] = figures
    return out


def _label(name: str, metrics: Mapping) -> str:
    if name in ("sensitivity", "specificity") and "threshold" in metrics:
        return f"{LABELS[name]} (threshold {metrics['threshold']:g})"
    return LABELS[name]


def _number(v: float) -> str:
    return "undefined" if math.isnan(v) else f"{v:.3f}"


def _finite(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _confusion_lines(confusion: Sequence[Sequence[int]], classes: Sequence[str] | None) -> list[str]:
    names = [str(c) for c in classes] if classes is not None else [str(k) for k in range(len(confusion))]
    cells = [[str(v) for v in row] for row in confusion]
    width = max(len(s) for s in names + [v for row in cells for v in row] + ["true"])
    head = " " * width + "  " + "  ".join(f"{c:>{width}}" for c in names)
    rows = [f"{names[k]:>{width}}  " + "  ".join(f"{v:>{width}}" for v in row) for k, row in enumerate(cells)]
    return ["", "Confusion matrix (rows: true class, columns: predicted class)", head, *rows]
