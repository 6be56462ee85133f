"""Clinical metrics of a trained model on labelled rows: pure numpy and scikit-learn, no torch, no
files (except `p2pfl.evaluation.plots`, imported on its own because matplotlib is slow to load).

    metrics    clinical_metrics (the full set), training_metrics (the per-round subset), warnings_for
    bootstrap  bootstrap_intervals: percentile intervals of every scalar figure
    table      format_table (for a person), as_json (for a program)
    plots      roc_plot, calibration_plot (PNG)
"""

from p2pfl.evaluation.bootstrap import bootstrap_intervals
from p2pfl.evaluation.metrics import (
    LABELS,
    LOWER_IS_BETTER,
    clinical_metrics,
    scalar_metrics,
    training_metrics,
    warnings_for,
)
from p2pfl.evaluation.table import as_json, format_table

__all__ = ["LABELS", "LOWER_IS_BETTER", "as_json", "bootstrap_intervals", "clinical_metrics",
           "format_table", "scalar_metrics", "training_metrics", "warnings_for"]
