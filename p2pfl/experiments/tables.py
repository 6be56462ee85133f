"""Aggregate an experiment's results over seeds: mean and sd per grid point, as CSV and Markdown.

Everything here is computed from results.csv and history.csv alone, so the committed tables
can be regenerated from the committed CSV files and compared.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from p2pfl.atomic import write_atomic
from p2pfl.experiments.columns import COLUMNS
from p2pfl.experiments.spec import Experiment, PlannedRun
from p2pfl.experiments.store import HISTORY, RESULTS, format_value, read_rows

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


@dataclass
class Group:
    """One table row: a grid point (panel labels and series) with its runs over seeds."""

    panel: tuple[str, ...]
    series: str
    runs: list[PlannedRun] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> one value per finished seed
    cap: float = math.nan  # the rounds a run had: "not reached within cap"
    time_cap: float = math.nan  # the simulated time a run had (for time_to_sync_target)


def groups(plan: list[PlannedRun]) -> list[Group]:
    """The plan's runs grouped over seeds, in plan order."""
    out: dict[tuple[tuple[str, ...], str], Group] = {}
    for run in plan:
        out.setdefault((run.panel, run.series), Group(run.panel, run.series)).runs.append(run)
    return list(out.values())


def run_metrics(exp: Experiment, plan: list[PlannedRun], results: list[dict[str, str]],
                history: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Numeric final metrics of each finished run of the plan, rounds_to_target included."""
    by_key = {r["key"]: r for r in results}
    out = {run.key: {k: _float(v) for k, v in by_key[run.key].items() if k in COLUMNS or k == "round"}
           for run in plan if run.key in by_key}
    if exp.kind != "train":
        return out
    curves: dict[str, list[tuple[float, float]]] = {}
    times: dict[str, list[float]] = {}  # simulated time of each evaluation (the round when untimed)
    for row in history:
        curves.setdefault(row["key"], []).append((_float(row["round"]), _float(row["mean_local_accuracy"])))
        times.setdefault(row["key"], []).append(_float(row.get("time") or row["round"]))
    central = {(run.panel, run.seed): out[run.key]["averaged_model_accuracy"]
               for run in plan if run.run == "centralized" and run.key in out}
    for run in plan:
        if run.key not in out:
            continue
        goal = central.get((run.panel, run.seed))
        if goal is None:
            out[run.key]["rounds_to_target"] = math.nan
            continue
        reached = [r for r, acc in curves.get(run.key, []) if acc >= exp.target * goal]
        out[run.key]["rounds_to_target"] = min(reached) if reached else math.inf
    if "time_to_sync_target" in exp.columns:
        _time_to_sync_target(plan, out, curves, times, exp.target)
    return out


def _time_to_sync_target(plan: list[PlannedRun], out: dict[str, dict[str, float]],
                         curves: dict[str, list[tuple[float, float]]], times: dict[str, list[float]],
                         target: float) -> None:
    """time_to_sync_target (and time, the run's last instant): the first simulated time at which
    the mean local accuracy reached `target` x the final mean local accuracy of the synchronous
    decentralized run with the same panel and seed."""
    sync: dict[tuple[tuple[str, ...], int], float] = {}
    for run in plan:
        if run.run == "decentralized" and run.config.mode == "sync" and run.key in out:
            sync.setdefault((run.panel, run.seed), out[run.key]["mean_local_accuracy"])
    for run in plan:
        if run.key not in out:
            continue
        goal = sync.get((run.panel, run.seed))
        points = list(zip(times.get(run.key, []), (acc for _, acc in curves.get(run.key, [])), strict=True))
        out[run.key]["time"] = points[-1][0] if points else math.nan
        reached = [t for t, acc in points if goal is not None and acc >= target * goal]
        out[run.key]["time_to_sync_target"] = (math.nan if goal is None else min(reached) if reached
                                               else math.inf)


def summarize(exp: Experiment, plan: list[PlannedRun], folder: Path) -> list[Group]:
    """Groups with their per-seed values, read from the results folder."""
    metrics = run_metrics(exp, plan, read_rows(folder / RESULTS), read_rows(folder / HISTORY))
    out = groups(plan)
    for g in out:
        for run in g.runs:
            if run.key not in metrics:
                continue
            m = metrics[run.key]
            g.cap = m.get("round", math.nan) if exp.kind == "train" else float(run.config.rounds)
            g.time_cap = m.get("time", math.nan)
            for col in exp.columns:
                g.values.setdefault(col, []).append(m.get(col, math.nan))
    return out


def summary_rows(exp: Experiment, table: list[Group]) -> list[dict[str, object]]:
    """One dict per group: labels, seeds, and mean / sd (and seeds reached) per column."""
    rows = []
    for g in table:
        row: dict[str, object] = dict(zip(exp.panel_keys, g.panel, strict=True))
        row[exp.series_header] = g.series
        row["seeds"] = max((len(v) for v in g.values.values()), default=0)
        for col in exp.columns:
            mean, sd, reached = _stats(g.values.get(col, []))
            row[f"{col}_mean"] = mean
            row[f"{col}_sd"] = sd
            if col in ("rounds_to_target", "measured_rounds", "time_to_sync_target"):
                row[f"{col}_reached"] = reached
        rows.append(row)
    return rows


def markdown_table(exp: Experiment, table: list[Group]) -> str:
    """The Markdown table: one row per grid point, mean ± sd over seeds."""
    labels = [*exp.panel_keys, exp.series_header]
    headers = [COLUMNS[c].header.format(target=f"{exp.target:.0%}") for c in exp.columns]
    lines = ["| " + " | ".join(labels + headers) + " |",
             "|" + "---|" * len(labels) + "---:|" * len(headers)]
    for g in table:
        cells = [*g.panel, g.series]
        cells += [_cell(COLUMNS[c].fmt, g.values.get(c, []),
                        g.time_cap if c == "time_to_sync_target" else g.cap) for c in exp.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(exp: Experiment, plan: list[PlannedRun], folder: Path, command: str) -> list[Path]:
    """Write summary.csv and summary.md into the results folder; returns their paths."""
    table = summarize(exp, plan, folder)
    rows = summary_rows(exp, table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(rows[0]) if rows else [])
    writer.writerows([format_value(v) for v in r.values()] for r in rows)
    csv_path, md_path = folder / SUMMARY_CSV, folder / SUMMARY_MD
    write_atomic(csv_path, buf.getvalue())
    seeds = ", ".join(str(s) for s in exp.seeds)
    over = f"Mean ± sd over seeds {seeds}." if len(exp.seeds) > 1 else f"Seed {seeds}."
    text = f"# {exp.name}\n\n"
    if exp.description:
        text += exp.description + "\n\n"
    text += f"{over} Reproduce: `{command}`\n\n" + markdown_table(exp, table)
    write_atomic(md_path, text)
    return [csv_path, md_path]


def _stats(values: list[float]) -> tuple[float, float, int]:
    """Mean and sd of the finite values, and how many there are."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        inf = values and all(math.isinf(v) for v in values if not math.isnan(v)) and any(
            math.isinf(v) for v in values)
        return (math.inf if inf else math.nan), math.nan, 0
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), sd, len(finite)


def _cell(fmt: str, values: list[float], cap: float) -> str:
    mean, sd, reached = _stats(values)
    if math.isinf(mean):
        return f"> {cap:.0f}"
    if math.isnan(mean):
        return "—"
    if mean == 0 and sd == 0:
        return "0"
    text = f"{mean:{fmt}}" if len(values) == 1 else f"{mean:{fmt}} ± {sd:{fmt}}"
    if reached < len([v for v in values if not math.isnan(v)]):
        text += f" ({reached}/{len(values)} reached)"
    return text


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
