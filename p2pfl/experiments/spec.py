"""Experiment files: fixed simulate settings, a grid of lists, seeds, baselines and a [quick] table.

```toml
name = "topologies"            # optional, defaults to the file name
kind = "train"                 # "train" (simulate runs) or "consensus" (gossip averaging only)
seeds = [0, 1, 2]
baselines = ["centralized", "local"]   # run once per grid point outside the network keys
dataset = "digits"             # any other top-level key is a fixed `p2pfl simulate` setting
rounds = 200

[grid]                         # the runs are the product of these lists (times the seeds)
nodes = [16, 64]
topology = ["ring", {topology = "regular", param = {d = 6}, label = "regular d=6"}]

[quick]                        # overrides for --quick (a smoke test); [quick.grid] replaces lists
rounds = 20
```

A grid element that is a table sets several keys at once. Grid keys whose elements only set
network keys (topology, param, mixing) are the *network* keys: baselines do not depend on them.
`lines = ["aggregator"]` names the grid keys that make the lines of the plots (and the series
column of the tables) instead, e.g. to compare aggregators in one panel per attack.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.experiments.columns import COLUMNS
from p2pfl.settings.sim import KEYLESS_DEFAULTS, SimConfig, check_sim_table
from p2pfl.tomlio import read_toml

KINDS = ("train", "consensus")
NOT_RESULTS = ("out", "password_env")  # settings that cannot change a run's numbers
BASELINE_NAMES = ("centralized", "local")
NETWORK_KEYS = frozenset({"topology", "param", "mixing", "allow_disconnected"})
META_KEYS = ("name", "description", "kind", "seeds", "baselines", "columns", "target", "grid", "quick",
             "lines")
DEFAULT_COLUMNS = {
    "train": ["averaged_model_accuracy", "mean_local_accuracy", "min_local_accuracy", "rounds_to_target",
              "consensus_distance", "mb_sent_per_node"],
    "consensus": ["spectral_gap", "predicted_rounds", "measured_rounds", "measured_over_predicted"],
}
# Settings a baseline run ignores; they are reset so that every topology shares one baseline run.
BASELINE_NETWORK = {"topology": "complete", "param": [], "mixing": "metropolis_hastings",
                    "allow_disconnected": False}


@dataclass(frozen=True)
class GridValue:
    """One element of a grid list: its label in tables and the settings it sets."""

    label: str
    settings: dict[str, object]


@dataclass
class Experiment:
    """A parsed experiment file."""

    name: str
    path: Path
    kind: str
    fixed: dict[str, object]
    grid: dict[str, list[GridValue]]
    seeds: list[int]
    baselines: list[str]
    columns: list[str]
    target: float = 0.95
    description: str = ""
    quick: bool = False
    lines: list[str] | None = None  # grid keys that make the lines (default: the network keys)

    @property
    def network_keys(self) -> list[str]:
        """Grid keys that make the lines of a plot: `lines`, else those that only change the network."""
        if self.lines is not None:
            return [k for k in self.grid if k in self.lines]
        return [k for k, vals in self.grid.items() if all(set(v.settings) <= NETWORK_KEYS for v in vals)]

    @property
    def panel_keys(self) -> list[str]:
        """The other grid keys (one table block / plot panel per combination)."""
        return [k for k in self.grid if k not in self.network_keys]

    @property
    def series_header(self) -> str:
        """Column title of the series label: the network keys, or "run" when there are none."""
        return " / ".join(self.network_keys) or "run"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep: its stable key, what it is, and its full settings."""

    key: str
    run: str  # decentralized, centralized, local or consensus
    seed: int
    panel: tuple[str, ...]  # labels of the panel keys
    series: str  # network label, or the baseline's name
    config: SimConfig


def load_experiment(path: Path, quick: bool = False) -> Experiment:
    """Read and check an experiment file; with `quick`, apply its [quick] overrides."""
    path = Path(path)
    where = str(path)
    raw = dict(read_toml(path))
    quick_table = raw.pop("quick", None)
    if quick_table is not None and not isinstance(quick_table, dict):
        raise UserError(f"{where}: [quick] must be a table")
    if quick:
        raw = _apply_quick(raw, quick_table, where)
    meta = {k: raw.pop(k) for k in META_KEYS if k in raw}
    kind = meta.get("kind", "train")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    fixed = check_sim_table(raw, where)
    fixed.pop("out", None)
    if "seed" in fixed:
        raise UserError(f"{where}: use seeds = [...] instead of seed")
    grid_raw = meta.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise UserError(f"{where}: [grid] must be a table of lists")
    grid = {key: _grid_values(key, values, where) for key, values in grid_raw.items()}
    for key, vals in grid.items():
        clash = {k for v in vals for k in v.settings} & set(fixed)
        if clash:
            raise UserError(f"{where}: [grid] {key} sets {', '.join(sorted(clash))}, which is also fixed")
    seeds = meta.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(_is_int(s) for s in seeds)):
        raise UserError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
    baselines = meta.get("baselines", [])
    if not isinstance(baselines, list) or any(b not in BASELINE_NAMES for b in baselines):
        allowed = ", ".join(BASELINE_NAMES)
        raise UserError(f"{where}: baselines must be a list of {allowed}, got {baselines!r}")
    if kind == "consensus" and baselines:
        raise UserError(f"{where}: a consensus experiment has no baselines")
    columns = meta.get("columns", DEFAULT_COLUMNS[kind])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise UserError(f"{where}: columns must be a list of strings")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise UserError(f"{where}: unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    target = meta.get("target", 0.95)
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise UserError(f"{where}: target must be a number in (0, 1], got {target!r}")
    name = meta.get("name", path.stem)
    description = meta.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise UserError(f"{where}: name and description must be strings")
    lines = meta.get("lines")
    if lines is not None and (not isinstance(lines, list) or any(k not in grid for k in lines)):
        raise UserError(f"{where}: lines must be a list of [grid] keys, got {lines!r}")
    return Experiment(name=name, path=path, kind=kind, fixed=fixed, grid=grid, seeds=[int(s) for s in seeds],
                      baselines=list(baselines), columns=list(columns), target=float(target),
                      description=description.strip(), quick=quick, lines=lines)


def plan_runs(exp: Experiment) -> list[PlannedRun]:
    """Every run of the experiment in table order; baselines once per panel and seed."""
    runs: dict[str, PlannedRun] = {}
    for panel in itertools.product(*(exp.grid[k] for k in exp.panel_keys)):
        for net in itertools.product(*(exp.grid[k] for k in exp.network_keys)):
            for seed in exp.seeds:
                run = _planned(exp, panel, net, None, seed)
                runs.setdefault(run.key, run)
        for baseline in exp.baselines:
            for seed in exp.seeds:
                run = _planned(exp, panel, (), baseline, seed)
                runs.setdefault(run.key, run)
    return list(runs.values())


def run_key(kind: str, run: str, cfg: SimConfig) -> str:
    """A stable 16-hex-digit key of everything that determines a run's result."""
    settings = cfg.to_dict()
    for key in NOT_RESULTS:
        settings.pop(key, None)
    for key, default in KEYLESS_DEFAULTS.items():
        if settings.get(key) == default:
            settings.pop(key)
    blob = json.dumps({"kind": kind, "run": run, "config": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _planned(exp: Experiment, panel: tuple[GridValue, ...], net: tuple[GridValue, ...],
             baseline: str | None, seed: int) -> PlannedRun:
    values: dict[str, object] = dict(exp.fixed)
    for v in (*panel, *net):
        values.update(v.settings)
    values["seed"] = seed
    if baseline:
        values.update(BASELINE_NETWORK)
        run = baseline
    else:
        run = "consensus" if exp.kind == "consensus" else "decentralized"
    values["baseline"] = baseline or "none"
    cfg = SimConfig(**values)
    series = baseline or " ".join(v.label for v in net) or run
    return PlannedRun(run_key(exp.kind, run, cfg), run, seed, tuple(v.label for v in panel), series, cfg)


def _grid_values(key: str, values: object, where: str) -> list[GridValue]:
    fields = {f.name for f in dataclasses.fields(SimConfig)}
    name = key.replace("-", "_")
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}: [grid] {key} must be a non-empty list, got {values!r}")
    out = []
    for i, value in enumerate(values):
        here = f"{where}: [grid] {key}[{i}]"
        if isinstance(value, dict) and name != "param":
            table = dict(value)
            label = table.pop("label", None)
            if label is not None and not isinstance(label, str):
                raise UserError(f"{here}: label must be a string")
            settings = check_sim_table(table, here)
            if not settings:
                raise UserError(f"{here}: the table sets nothing")
            out.append(GridValue(label or _auto_label(settings), settings))
        elif name not in fields:
            raise UserError(f"{here}: {key!r} is not a simulate setting, so its elements must be tables")
        else:
            settings = check_sim_table({name: value}, here)
            out.append(GridValue(_auto_label(settings) if name == "param" else str(value), settings))
        if name in ("seed", "out", "baseline") or {"seed", "out", "baseline"} & set(out[-1].settings):
            raise UserError(f"{here}: seed, out and baseline cannot be grid keys (use seeds, baselines)")
    labels = [v.label for v in out]
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: [grid] {key} has two elements with the same label; give each a label")
    return out


def _auto_label(settings: dict[str, object]) -> str:
    parts = []
    if "topology" in settings:
        parts.append(str(settings["topology"]))
    parts += [str(p) for p in settings.get("param", [])]  # type: ignore[union-attr]
    parts += [f"{k}={v}" for k, v in settings.items() if k not in ("topology", "param")]
    return " ".join(parts)


def _apply_quick(raw: dict[str, object], quick: dict[str, object] | None, where: str) -> dict[str, object]:
    """Overlay [quick] (and [quick.grid]); without one, shrink the grid to its first two values."""
    out = dict(raw)
    grid = dict(out.get("grid", {})) if isinstance(out.get("grid", {}), dict) else out.get("grid")
    if quick is None:
        if isinstance(grid, dict):
            grid = {k: v[:2] if isinstance(v, list) else v for k, v in grid.items()}
        seeds = out.get("seeds", [0])
        out["seeds"] = seeds[:1] if isinstance(seeds, list) else seeds
        if isinstance(out.get("rounds"), int):
            out["rounds"] = min(int(out["rounds"]), 20)  # type: ignore[arg-type]
    else:
        for key, value in quick.items():
            if key == "grid":
                if not isinstance(value, dict) or not isinstance(grid, dict):
                    raise UserError(f"{where}: [quick.grid] must be a table of lists")
                unknown = set(value) - set(grid)
                if unknown:
                    raise UserError(f"{where}: [quick.grid] has {', '.join(sorted(unknown))}, not in [grid]")
                grid.update(value)
            elif key == "quick":
                raise UserError(f"{where}: [quick] cannot contain another [quick]")
            else:
                out[key] = value
    if grid is not None:
        out["grid"] = grid
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
