"""Write a simulation's results: metrics.csv, config.json, convergence.png, JSON summary."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from p2pfl.atomic import open_atomic
from p2pfl.gossip.mixing import predicted_rounds
from p2pfl.sim.runner import SimResult, timed
from p2pfl.sim.speeds import parse_speeds, round_time

# Accuracy levels of `time_to_accuracy` in the summary of a timed run (mean local accuracy)
ACCURACY_LEVELS = (0.5, 0.8, 0.9, 0.95)


def summary(result: SimResult) -> dict[str, object]:
    """The JSON object `p2pfl simulate --json` prints."""
    out: dict[str, object] = {
        "config": result.config.to_dict(),
        "spectral_gap": result.spectral_gap,
        "spectral_gap_method": result.gap_method,
        "predicted_rounds": _finite(predicted_rounds(result.spectral_gap)),
        "n_params": result.n_params,
        "wall_seconds": round(result.wall_seconds, 3),
        "device": result.device,
        "phase_seconds": {k: round(v, 3) for k, v in result.phases.items()},
        "final": result.main.final,
        "mb_sent_per_node": result.main.rows[-1]["mb_sent_per_node"] if result.main.rows else 0.0,
        "bytes_sent_per_node": result.main.bytes_sent_per_node,
    }
    if result.main.epsilon is not None:
        out["epsilon"] = result.main.epsilon
        out["delta"] = result.main.delta
    if result.main.byzantine:
        out["byzantine_nodes"] = result.main.byzantine
    for run in result.runs[1:]:
        out["baseline"] = {"name": run.name, "final": run.final}
    if timed(result.config) and result.main.timeline:
        out.update(timing(result))
    return out


def timing(result: SimResult) -> dict[str, object]:
    """The simulated-time part of a timed run's summary: each node's local-round time, the
    synchronous round, accuracy over time (averaged model, mean and per node), the time each
    accuracy level was first reached, and for async the local rounds done and the mixes."""
    cfg, main = result.config, result.main
    times = parse_speeds(cfg.speeds, cfg.nodes, cfg.seed)
    out: dict[str, object] = {
        "mode": cfg.mode, "node_round_times": [round(float(t), 6) for t in times],
        "sync_round_time": round_time(times), "timeline": main.timeline,
        "time_to_accuracy": {str(level): _finite(time_to_accuracy(main.rows, level))
                             for level in ACCURACY_LEVELS},
    }
    if main.local_rounds:
        out["local_rounds"] = main.local_rounds
        out["mixes"] = main.mix_stats
    return out


def time_to_accuracy(rows: list[dict[str, float]], goal: float, key: str = "mean_local_accuracy") -> float:
    """The first evaluated simulated time at which `key` reached `goal` (inf: never)."""
    return min((float(r["time"]) for r in rows if r[key] >= goal), default=math.inf)


def write_outputs(result: SimResult, out_dir: Path) -> list[Path]:
    """Write metrics.csv, config.json and convergence.png into out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"run": run.name, **row} for run in result.runs for row in run.rows]
    header = list(rows[0]) if rows else ["run", "round"]
    metrics = out_dir / "metrics.csv"
    with open_atomic(metrics) as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    config = out_dir / "config.json"
    with open_atomic(config) as fh:
        json.dump(summary(result), fh, indent=2)
        fh.write("\n")
    plot = out_dir / "convergence.png"
    plot_convergence(result, plot)
    return [metrics, config, plot]


def plot_convergence(result: SimResult, path: Path) -> None:
    """Accuracy per round (every run) and consensus distance per round (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    fig, (ax_acc, ax_cons) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in result.runs:
        r = [row["round"] for row in run.rows]
        mean = [row["mean_local_accuracy"] for row in run.rows]
        line = ax_acc.plot(r, mean, label=f"{run.name}: mean local")
        if run.name != "centralized":
            ax_acc.fill_between(r, [row["min_local_accuracy"] for row in run.rows],
                                [row["max_local_accuracy"] for row in run.rows],
                                color=line[0].get_color(), alpha=0.15)
            ax_acc.plot(r, [row["averaged_model_accuracy"] for row in run.rows], "--",
                        color=line[0].get_color(), label=f"{run.name}: averaged model")
            ax_cons.plot(r, [max(row["consensus_distance"], 1e-12) for row in run.rows], label=run.name)
    ax_acc.set(xlabel="round", ylabel="test accuracy (band: min-max over nodes)", ylim=(0, 1.01))
    ax_acc.legend(fontsize=8, loc="lower right")
    ax_acc.grid(alpha=0.3)
    ax_cons.set(xlabel="round", ylabel="consensus distance (1/n) sum ||x_i - mean||^2", yscale="log")
    ax_cons.legend(fontsize=8)
    ax_cons.grid(alpha=0.3, which="both")
    fig.suptitle(f"{cfg.dataset}, {cfg.model}, {cfg.nodes} nodes, {cfg.topology}, {cfg.partition}")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
