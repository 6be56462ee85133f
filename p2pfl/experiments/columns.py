"""The metrics an experiment table can report: Markdown header and number format of each column.

Its own module so that the spec (which checks `columns = [...]`) and the tables (which format
them) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """A reported metric: its Markdown header and number format."""

    header: str
    fmt: str


COLUMNS = {
    "averaged_model_accuracy": Column("averaged-model acc", ".3f"),
    "averaged_model_balanced_accuracy": Column("averaged-model balanced acc", ".3f"),
    "averaged_model_auroc": Column("averaged-model AUROC", ".3f"),
    "mean_local_accuracy": Column("mean local acc", ".3f"),
    "min_local_accuracy": Column("min local acc", ".3f"),
    "max_local_accuracy": Column("max local acc", ".3f"),
    "train_loss": Column("train loss", ".3f"),
    "rounds_to_target": Column("rounds to {target} of centralized", ".0f"),
    "time_to_sync_target": Column("time to {target} of sync", ".0f"),
    "stale_fraction": Column("held models left out as stale", ".1%"),
    "consensus_distance": Column("consensus distance", ".2e"),
    "mb_sent_per_node": Column("MB sent per node", ".3g"),
    "epsilon": Column("epsilon", ".3g"),
    "spectral_gap": Column("spectral gap", ".4f"),
    "predicted_rounds": Column("predicted rounds ln(1000)/gap", ".1f"),
    "measured_rounds": Column("measured rounds", ".1f"),
    "measured_over_predicted": Column("measured / predicted", ".2f"),
}
