"""`p2pfl experiment FILE.toml`: a grid of simulate runs over seeds, with tables and plots.

Runs already in the results folder (matched by their key, a hash of the full settings) are
skipped, and every finished run is saved at once, so an interrupted sweep is resumed by running
the same command again. The runs go to a backend (p2pfl.experiments.backends): this process or
`jobs` worker processes, or Ray tasks; only JSON strings cross the process boundary. The device
(`--device`) travels in the job, beside the settings: it is not part of a run's key.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

from p2pfl.errors import BAD_INPUT, UserError
from p2pfl.experiments.backends import Session, get_backend
from p2pfl.experiments.spec import Experiment, PlannedRun, load_experiment, plan_runs
from p2pfl.experiments.store import ResultsStore
from p2pfl.learning.sources import resolve_spec, source_options
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.device import DEVICES, resolve_device

Progress = Callable[[str, int, int], None]  # (what, done, total)

__all__ = ["SweepReport", "default_out", "load_experiment", "plan_runs", "run_experiment"]


@dataclass
class SweepReport:
    """What a sweep did and wrote."""

    folder: Path
    planned: int
    skipped: int
    ran: int
    wall_seconds: float
    written: list[Path] = field(default_factory=list)
    table: str = ""
    devices: list[str] = field(default_factory=list)  # where the runs of this sweep ran (none: none ran)


def default_out(exp: Experiment) -> Path:
    """results/<name> beside the experiment file (results/<name>-quick for --quick)."""
    return exp.path.parent / "results" / (exp.name + ("-quick" if exp.quick else ""))


def command(exp: Experiment) -> str:
    """The command line that reproduces the experiment's results."""
    path = exp.path
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return f"p2pfl experiment {path.as_posix()}" + (" --quick" if exp.quick else "")


def run_experiment(
    exp: Experiment, out: Path, jobs: int = 1, progress: Progress | None = None, backend: str = "local",
    address: str | None = None, device: str = "cpu",
) -> SweepReport:
    """Run every unfinished run of the experiment into `out` on `backend` (local, ray; `address`:
    the Ray cluster) and `device` (cpu, cuda, auto), then write tables and plots."""
    from p2pfl.experiments.plots import write_plots
    from p2pfl.experiments.tables import markdown_table, summarize, write_tables

    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    chosen = get_backend(backend, address)
    start = time.perf_counter()
    out = Path(out)
    plan = plan_runs(exp)
    check_plan(exp, plan)
    store = ResultsStore(out, [r.key for r in plan])
    done = store.done()
    todo = [r for r in plan if r.key not in done]
    # Progress counts training rounds (live with one job); a consensus run counts as one.
    what = f"{exp.name} rounds" if exp.kind == "train" else f"{exp.name} runs"
    total = sum(_units(r) for r in plan)
    finished = sum(_units(r) for r in plan if r.key in done)

    def on_round(t: int) -> None:
        if progress is not None:
            progress(what, finished + t, total)

    on_round(0)
    devices: list[str] = []
    if todo:
        with chosen.open(jobs, address) as session:
            devices = _devices(exp, todo, device, session)
            specs = _jobs(exp, todo, devices)
            tick = on_round if exp.kind == "train" else None
            with closing(session.run(specs, execute, tick)) as results:
                for i, text in results:
                    row, history = result_rows(exp, todo[i], _checked_result(exp, todo[i], text))
                    store.add(row, history)
                    finished += _units(todo[i])
                    on_round(0)
    written = [out / "results.csv", *([out / "history.csv"] if exp.kind == "train" else [])]
    written += write_tables(exp, plan, out, command(exp))
    written += write_plots(exp, plan, out)
    table = markdown_table(exp, summarize(exp, plan, out))
    return SweepReport(out, len(plan), len(plan) - len(todo), len(todo), time.perf_counter() - start,
                       written, table, sorted(set(devices)))


def check_plan(exp: Experiment, plan: list[PlannedRun]) -> None:
    """Catch bad settings before the sweep starts: topologies, connectivity, datasets, partitions."""
    from p2pfl.gossip.topology import build_topology
    from p2pfl.learning.datasets import load_dataset
    from p2pfl.learning.partition import partition
    from p2pfl.settings.load import sim_schema
    from p2pfl.sim.runner import validate

    topologies: set[tuple[object, ...]] = set()
    datasets: dict[tuple[object, ...], object] = {}
    parts: set[tuple[object, ...]] = set()
    for run in plan:
        cfg = resolved(run.config, exp.path.parent)
        try:
            validate(cfg)
            net = (cfg.topology, cfg.nodes, tuple(cfg.param), cfg.mixing, cfg.seed)
            if run.run in ("decentralized", "consensus") and net not in topologies:
                topologies.add(net)
                topo = build_topology(cfg.topology, cfg.nodes, cfg.param, seed=cfg.seed, scheme=cfg.mixing)
                if not cfg.allow_disconnected and not topo.is_connected():
                    raise UserError(f"topology {cfg.topology} with {cfg.nodes} nodes is disconnected "
                                    "(set allow_disconnected = true to run it anyway)")
            if exp.kind != "train":
                continue
            options = source_options(cfg.dataset, cfg)
            schema, classes = sim_schema(cfg)
            data_key = (cfg.dataset, cfg.label_column, cfg.site_column, cfg.nodes, tuple(options.items()),
                        repr(schema), tuple(classes or ()))
            if data_key not in datasets:
                datasets[data_key] = load_dataset(cfg.dataset, seed=0, label_column=cfg.label_column,
                                                  site_column=cfg.site_column, nodes=cfg.nodes,
                                                  options=options, classes=classes, schema=schema)
            ds = datasets[data_key]
            if (data_key, cfg.partition) not in parts:
                parts.add((data_key, cfg.partition))
                partition(cfg.partition, ds.y_train, cfg.nodes, seed=0, site=ds.site_train,  # type: ignore[attr-defined]
                          n_features=ds.n_features)  # type: ignore[attr-defined]
        except BAD_INPUT as exc:
            raise UserError(f"{exp.path}: {describe(exp, run)}: {exc}") from None


def describe(exp: Experiment, run: PlannedRun) -> str:
    """A run in words: its grid labels and seed."""
    labels = [f"{k}={v}" for k, v in zip(exp.panel_keys, run.panel, strict=True)]
    return f"run {', '.join([*labels, f'{exp.series_header}={run.series}', f'seed={run.seed}'])}"


def resolved(cfg: SimConfig, base: Path) -> SimConfig:
    """cfg with a dataset's relative path (`csv:PATH`) taken relative to the experiment file's folder."""
    dataset = resolve_spec(cfg.dataset, base)
    return cfg if dataset == cfg.dataset else replace(cfg, dataset=dataset)


def execute(job: str, on_round: Callable[[int], None] | None = None) -> str:
    """Run one job (JSON: kind, run, config, base, device) and return its result as JSON.

    `on_round(t)` is called after each training round. Errors come back as
    {"error": message, "user": bool}, so that only strings cross processes.
    """
    spec = json.loads(job)
    try:
        cfg = resolved(SimConfig(**spec["config"]), Path(spec["base"]))
        start = time.perf_counter()
        if spec["kind"] == "consensus":
            from p2pfl.sim.consensus import measure_rounds

            out: dict[str, object] = {"final": measure_rounds(cfg), "history": []}
        else:
            from p2pfl.sim.runner import simulate

            tick = None if on_round is None else (lambda _name, t, _total: on_round(t))
            result = simulate(cfg, tick, decentralized=spec["run"] == "decentralized",
                              device=spec.get("device", "cpu"))
            rows = result.runs[0].rows
            gap = result.spectral_gap if spec["run"] == "decentralized" else float("nan")
            out = {"final": {**rows[-1], "spectral_gap": gap, "n_params": result.n_params}, "history": rows}
        out["wall_seconds"] = time.perf_counter() - start
        return json.dumps(out)
    except BAD_INPUT as exc:
        return json.dumps({"error": str(exc), "user": True})
    except Exception:  # noqa: BLE001 - reported in the parent with its traceback
        return json.dumps({"error": traceback.format_exc(), "user": False})


def result_rows(exp: Experiment, run: PlannedRun, result: dict[str, object]) -> tuple[dict, list[dict]]:
    """The results.csv row and history.csv rows of one finished run."""
    from p2pfl.gossip.mixing import predicted_rounds

    row: dict[str, object] = {"key": run.key, "run": run.run, "seed": run.seed}
    row.update(zip(exp.panel_keys, run.panel, strict=True))
    row[exp.series_header] = run.series
    final = dict(result["final"])  # type: ignore[call-overload]
    if exp.kind == "train":
        gap = float(final["spectral_gap"])
        final["predicted_rounds"] = float("nan") if math.isnan(gap) else predicted_rounds(gap)
    row.update(final)
    row["wall_seconds"] = round(float(result["wall_seconds"]), 2)  # type: ignore[arg-type]
    return row, list(result["history"])  # type: ignore[call-overload]


def _jobs(exp: Experiment, todo: list[PlannedRun], devices: list[str] | None = None) -> list[str]:
    """The JSON job of each run: what `execute` reads (the device beside the settings, not in them)."""
    base = str(exp.path.parent.resolve())
    devices = devices or ["cpu"] * len(todo)
    return [json.dumps({"kind": exp.kind, "run": r.run, "config": r.config.to_dict(), "base": base,
                        "device": d}) for r, d in zip(todo, devices, strict=True)]


def _devices(exp: Experiment, todo: list[PlannedRun], device: str, session: Session) -> list[str]:
    """The device of each run for `--device`: a GPU only for vectorized training runs (consensus
    runs train nothing); one UserError line for cuda where the session's workers have none."""
    if device not in DEVICES:
        resolve_device(device)  # the error that lists the devices
    if exp.kind != "train" or device == "cpu":
        return ["cpu"] * len(todo)
    cuda = session.has_cuda()
    if device == "cuda" and not cuda:
        raise UserError(f"--device cuda: {session.no_gpu}; use --device cpu or auto")
    out = []
    for run in todo:
        try:
            out.append(resolve_device(device, run.config.engine, cuda=cuda))
        except UserError as exc:
            raise UserError(f"{exp.path}: {describe(exp, run)}: {exc}") from None
    return out


def _units(run: PlannedRun) -> int:
    return 1 if run.run == "consensus" else run.config.rounds


def _checked_result(exp: Experiment, run: PlannedRun, text: str) -> dict:
    result = json.loads(text)
    if "error" in result:
        message = f"{exp.path}: {describe(exp, run)}: {result['error']}"
        raise UserError(message) if result["user"] else RuntimeError(message)
    return result
