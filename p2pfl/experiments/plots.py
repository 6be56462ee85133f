"""Plots of an experiment, from its results folder: curves averaged over seeds, one panel per grid point.

Training experiments: accuracy per round, consensus distance per round (log scale), and
accuracy against MB sent per node. Consensus experiments: measured against predicted rounds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from p2pfl.atomic import open_atomic
from p2pfl.experiments.spec import Experiment, PlannedRun
from p2pfl.experiments.store import HISTORY, RESULTS, read_rows
from p2pfl.experiments.tables import Group, groups

BASELINE_STYLE = {"centralized": {"color": "black", "linestyle": "--"},
                  "local": {"color": "0.5", "linestyle": ":"}}


MAX_COLUMNS = 4  # panels per row of a figure


def write_plots(exp: Experiment, plan: list[PlannedRun], folder: Path) -> list[Path]:
    """Draw the experiment's PNG files into its results folder; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    if exp.kind == "consensus":
        path = folder / "predicted_vs_measured.png"
        _consensus_scatter(exp, plan, read_rows(folder / RESULTS), path)
        return [path]
    curves = _curves(read_rows(folder / HISTORY))
    table = [g for g in groups(plan) if any(r.key in curves for r in g.runs)]
    out = []
    for name, metric, xmetric, ylabel, logy in [
        ("accuracy.png", "mean_local_accuracy", "round", "mean local test accuracy", False),
        ("consensus.png", "consensus_distance", "round", "consensus distance (1/n) Σ‖xᵢ − x̄‖²", True),
        ("accuracy_vs_mb.png", "mean_local_accuracy", "mb_sent_per_node", "mean local test accuracy", False),
    ]:
        path = folder / name
        _panels(exp, table, curves, metric, xmetric, ylabel, logy, path)
        out.append(path)
    return out


def _curves(history: list[dict[str, str]]) -> dict[str, dict[str, list[float]]]:
    """key -> metric -> values per evaluated round."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in history:
        run = out.setdefault(row["key"], {})
        for k, v in row.items():
            if k != "key":
                run.setdefault(k, []).append(float(v) if v else math.nan)
    return out


def _mean_curve(g: Group, curves: dict[str, dict[str, list[float]]], metric: str) -> np.ndarray | None:
    rows = [curves[r.key][metric] for r in g.runs if r.key in curves]
    if not rows:
        return None
    length = min(len(r) for r in rows)
    return np.mean([r[:length] for r in rows], axis=0)


def _panels(exp: Experiment, table: list[Group], curves: dict[str, dict[str, list[float]]], metric: str,
            xmetric: str, ylabel: str, logy: bool, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = list(dict.fromkeys(g.panel for g in table))
    ncols = len(exp.grid[exp.panel_keys[-1]]) if exp.panel_keys else 1
    ncols = max(1, min(ncols, len(panels), MAX_COLUMNS))
    nrows = max(1, math.ceil(len(panels) / ncols))
    series = list(dict.fromkeys(g.series for g in table))
    legend_cols = min(len(series), 5 if ncols > 1 else 3)  # a single panel: a narrower legend
    top = 0.55 + 0.28 * math.ceil(len(series) / max(legend_cols, 1))  # inches for title and legend
    width, height = max(4.3 * ncols + 0.6, 7.5), 3.2 * nrows + top
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    colors = _colors([s for s in series if s not in BASELINE_STYLE])
    handles: dict[str, object] = {}
    for i, (ax, panel) in enumerate(zip(axes.flat, panels, strict=False)):
        for g in (g for g in table if g.panel == panel):
            if xmetric != "round" and g.series in BASELINE_STYLE:
                continue  # baselines send nothing
            y, x = _mean_curve(g, curves, metric), _mean_curve(g, curves, xmetric)
            if y is None or x is None:
                continue
            style = BASELINE_STYLE.get(g.series, {"color": colors.get(g.series), "linestyle": "-"})
            if logy and not np.any(y > 0):
                # exact averaging (or a single model): nothing to draw on a log scale
                handles.setdefault(f"{g.series}: always 0", Line2D([], [], linestyle="none"))
                continue
            (line,) = ax.plot(x, np.where(y > 0, y, np.nan) if logy else y, linewidth=1.4, **style)
            handles.setdefault(g.series, line)
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(exp.panel_keys, panel, strict=True)), fontsize=9)
        if i >= len(panels) - ncols:
            ax.set_xlabel("round" if xmetric == "round" else "MB sent per node (cumulative)")
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=9)
        if logy:
            ax.set_yscale("log")
        if xmetric != "round":
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both" if logy else "major")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    what = "vs MB sent per node" if xmetric != "round" else "per round"
    seeds = ", ".join(map(str, exp.seeds))
    fig.suptitle(f"{exp.name}: {ylabel.split(' (')[0]} {what} (mean over seeds {seeds})",
                 fontsize=11, y=1 - 0.12 / height)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=legend_cols, fontsize=9,
               bbox_to_anchor=(0.5, 1 - 0.45 / height), title=exp.series_header, title_fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - top / height))
    _save(fig, path)


def _consensus_scatter(exp: Experiment, plan: list[PlannedRun], results: list[dict[str, str]],
                       path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    by_key = {r["key"]: r for r in results}
    series = list(dict.fromkeys(r.series for r in plan))
    panels = list(dict.fromkeys(r.panel for r in plan))
    colors = _colors(series)
    markers = dict(zip(panels, "os^Dvx*P", strict=False))
    fig, ax = plt.subplots(figsize=(8.6, 6.2))
    xs, ys = [], []
    for run in plan:
        row = by_key.get(run.key)
        if row is None:
            continue
        x, y = float(row["predicted_rounds"]), float(row["measured_rounds"])
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.scatter(x, y, color=colors[run.series], marker=markers.get(run.panel, "o"), s=42, alpha=0.8,
                   edgecolors="none")
        xs.append(x)
        ys.append(y)
    if xs:
        lo, hi = min(xs + ys) / 1.5, max(xs + ys) * 1.5
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="y = x")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted rounds ln(1000) / spectral gap")
    ax.set_ylabel("measured rounds to shrink consensus error 1000x")
    ax.grid(alpha=0.3, which="both")
    topo = [Line2D([], [], color=colors[s], marker="o", linestyle="", label=s) for s in series]
    size = [Line2D([], [], color="0.3", marker=markers[p], linestyle="", label=", ".join(
        f"{k}={v}" for k, v in zip(exp.panel_keys, p, strict=True))) for p in panels]
    diag = [Line2D([], [], color="black", linewidth=1, label="y = x")]
    first = ax.legend(handles=topo + diag, loc="upper left", fontsize=9, title=exp.series_header)
    ax.add_artist(first)
    if exp.panel_keys:
        ax.legend(handles=size, loc="lower right", fontsize=9)
    ax.set_title(f"{exp.name}: measured vs predicted consensus rounds (every seed)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def _colors(names: list[str]) -> dict[str, object]:
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(names))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _save(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    with open_atomic(path, text=False) as fh:
        fig.savefig(fh, format="png", dpi=100)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
