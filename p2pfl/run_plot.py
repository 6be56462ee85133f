"""`p2pfl plot STATE_DIR...`: the convergence plot of a real run, from each node's metrics.jsonl
(validation accuracy, balanced accuracy and AUROC per round, one line per node)."""

from __future__ import annotations

from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.net.checkpoint import METRICS, read_metrics

FIGURES = (("val_accuracy", "validation accuracy"), ("val_balanced_accuracy", "balanced accuracy"),
           ("val_auroc", "AUROC"))


def site_name(state_dir: Path) -> str:
    """A state folder's site: the folder that holds it when it is called `state`, else its own."""
    resolved = state_dir.resolve()
    return resolved.parent.name if resolved.name == "state" else resolved.name


def plot_runs(state_dirs: list[Path], out: Path) -> Path:
    """One panel per figure, one line per state folder; refuses a folder without metrics."""
    runs = []
    for folder in state_dirs:
        if not (folder / METRICS).is_file():
            raise UserError(f"{folder}: no {METRICS} (give the state folders of nodes that ran)")
        runs.append((site_name(folder), read_metrics(folder)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FIGURES), figsize=(5 * len(FIGURES), 3.8), squeeze=False)
    for ax, (key, title) in zip(axes[0], FIGURES, strict=True):
        for name, rows in runs:
            points = [(r["round"] + 1, r[key]) for r in rows if isinstance(r.get(key), int | float)]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=name)
        ax.set(xlabel="round", ylabel=title, ylim=(0, 1.01), title=title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
