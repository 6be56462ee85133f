"""Run one simulation: build data, topology and engine, loop over rounds, collect metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from p2pfl.errors import UserError
from p2pfl.evaluation.metrics import training_metrics
from p2pfl.gossip.overlap import with_local_change
from p2pfl.gossip.topology import Topology, build_topology
from p2pfl.learning.batches import BatchPlan, Step
from p2pfl.learning.datasets import Dataset, load_dataset
from p2pfl.learning.models import build_model, check_model_spec, parse_hidden
from p2pfl.learning.params import flatten, num_params
from p2pfl.learning.partition import partition
from p2pfl.learning.sources import source_options
from p2pfl.learning.trainer import OptimConfig
from p2pfl.settings.load import sim_schema
from p2pfl.settings.sim import BASELINES, ENGINES, SimConfig, local_steps
from p2pfl.sim import blocks
from p2pfl.sim.asynchronous import AsyncGossip, check_async_run, check_settings
from p2pfl.sim.attacks import byzantine_nodes, poisoned_data
from p2pfl.sim.data import NodeData
from p2pfl.sim.device import resolve_device
from p2pfl.sim.exchange import Exchange
from p2pfl.sim.faults import RoundFaults
from p2pfl.sim.metrics import average_buffers, consensus_distance, node_accuracies, probabilities
from p2pfl.sim.options import Robustness, check_against_topology, parse_robustness
from p2pfl.sim.privacy_budget import PrivacyBudget
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.speeds import parse_speeds, round_time
from p2pfl.sim.vectorized import VectorizedEngine

SMALL_NETWORK = 1_000_000  # nodes x parameters below which a run keeps torch on one thread

# Per-node accuracies use a fixed random subset of at most this many test rows (the cost is
# nodes x rows); the averaged model is scored on the whole test set.
MAX_EVAL_ROWS = 2000

Progress = Callable[[str, int, int], None]  # (run name, rounds done, total rounds)

# Where wall_seconds goes: data, topology (and its checks), spectral gap, then per round local
# training, communication (mixing, or the exchange with faults, attacks, compression) and the
# evaluations; "other" is the rest (model, batch plans, bookkeeping).
PHASES = ("data", "topology", "gap", "training", "communication", "evaluation", "other")

FINAL_KEYS = (
    "mean_local_accuracy", "min_local_accuracy", "max_local_accuracy",
    "averaged_model_accuracy", "averaged_model_balanced_accuracy", "averaged_model_auroc",
    "consensus_distance", "train_loss",
)


@dataclass
class RunResult:
    """Metric rows of one run (decentralized, or a baseline) and its final row."""

    name: str
    rows: list[dict[str, float]] = field(default_factory=list)
    bytes_sent_per_node: float = 0.0  # mean payload bytes a node sent, over the whole run
    epsilon: float | None = None  # DP: max over nodes of their epsilon at `delta`
    delta: float | None = None
    byzantine: list[int] = field(default_factory=list)  # malicious nodes (excluded from metrics)
    final_params: torch.Tensor | None = None  # [N, P] models of every node after the last round
    node_accuracy: list[float] = field(default_factory=list)  # last evaluation, per (honest) node
    # Timed runs (--mode async or --speeds): per evaluation, simulated time and accuracies
    timeline: list[dict[str, object]] = field(default_factory=list)
    local_rounds: list[int] = field(default_factory=list)  # async: local rounds each node did
    mix_stats: dict[str, float] = field(default_factory=dict)  # async: p2pfl.sim.asynchronous.MixStats

    @property
    def final(self) -> dict[str, float]:
        return {k: self.rows[-1][k] for k in FINAL_KEYS} if self.rows else {}


@dataclass
class SimResult:
    """Everything `p2pfl simulate` reports."""

    config: SimConfig
    spectral_gap: float
    n_params: int
    runs: list[RunResult]
    wall_seconds: float = 0.0
    device: str = "cpu"  # where the engine ran: cpu or cuda
    gap_method: str = ""  # how the gap was found: exact, or a Lanczos estimate and its state
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (PHASES), all runs

    @property
    def main(self) -> RunResult:
        return self.runs[0]


def validate(cfg: SimConfig) -> None:
    """Check the settings that need no data; raises UserError with the problem."""
    if cfg.engine not in ENGINES:
        raise UserError(f"unknown engine {cfg.engine!r}; choose one of {', '.join(ENGINES)}")
    check_model_spec(cfg.model)
    if cfg.baseline not in BASELINES:
        raise UserError(f"unknown baseline {cfg.baseline!r}; choose one of {', '.join(BASELINES)}")
    if cfg.local_steps is not None and cfg.local_epochs is not None:
        raise UserError("give --local-steps or --local-epochs, not both")
    for key in ("nodes", "rounds", "batch_size", "eval_every"):
        if getattr(cfg, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be at least 1, got {getattr(cfg, key)}")
    for key in ("local_steps", "local_epochs"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be at least 1")
    opts = parse_robustness(cfg)
    check_settings(cfg)
    if cfg.mode == "overlap" and opts.compression.choco:
        raise UserError(f"--compression {opts.compression.name} (CHOCO) needs --mode sync: its public "
                        "copies follow the trained models")


def timed(cfg: SimConfig) -> bool:
    """Whether a run reports simulated time: asynchronous, or given per-node speeds."""
    return cfg.mode == "async" or cfg.speeds is not None


def prepare(cfg: SimConfig, phases: dict[str, float] | None = None) -> tuple[Dataset, NodeData, Topology]:
    """Load and partition the data and build the topology (the slow, checkable part); the
    seconds of each go into `phases` ("topology", "data")."""
    phases = {} if phases is None else phases
    start = time.perf_counter()
    validate(cfg)
    topo = build_topology(cfg.topology, cfg.nodes, cfg.param, seed=cfg.seed, scheme=cfg.mixing)
    if not cfg.allow_disconnected and not topo.is_connected():
        raise UserError(
            f"topology {cfg.topology} with {cfg.nodes} nodes is disconnected; "
            "pass --allow-disconnected to simulate it anyway"
        )
    check_against_topology(parse_robustness(cfg), topo)
    if cfg.mode == "async":
        check_async_run(parse_robustness(cfg))
    start = _lap(phases, "topology", start)
    schema, classes = sim_schema(cfg)
    ds = load_dataset(cfg.dataset, seed=cfg.seed, label_column=cfg.label_column,
                      site_column=cfg.site_column, nodes=cfg.nodes, classes=classes, schema=schema,
                      options=source_options(cfg.dataset, cfg))
    part = partition(cfg.partition, ds.y_train, cfg.nodes, seed=cfg.seed,
                     site=ds.site_train, n_features=ds.n_features)
    data = NodeData.build(ds, part)
    _lap(phases, "data", start)
    return ds, data, topo


def _lap(phases: dict[str, float], name: str, start: float) -> float:
    """Add the seconds since `start` to phases[name]; returns now."""
    now = time.perf_counter()
    phases[name] = phases.get(name, 0.0) + now - start
    return now


def simulate(cfg: SimConfig, progress: Progress | None = None, decentralized: bool = True,
             device: str = "cpu") -> SimResult:
    """Run decentralized training (unless `decentralized` is False), then the requested baseline.

    `device` is cpu, cuda or auto (p2pfl.sim.device): where the vectorized engine computes.
    """
    start = time.perf_counter()
    if cfg.mode == "async" and device == "cuda":
        raise UserError("--device cuda: --mode async trains one node at a time on the CPU (the "
                        "reference engine's step); use --device cpu or auto")
    dev = resolve_device(device, "reference" if cfg.mode == "async" else cfg.engine)
    phases = dict.fromkeys(PHASES, 0.0)
    ds, data, topo = prepare(cfg, phases)
    torch.default_generator.manual_seed(cfg.seed)  # CPU only: torch.manual_seed also queues CUDA's
    model = build_model(cfg.model, ds.input_shape, ds.n_classes, parse_hidden(cfg.hidden), cfg.seed)
    opt = OptimConfig(name=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum)
    lap = time.perf_counter()
    gap = topo.gap()
    _lap(phases, "gap", lap)
    opts = parse_robustness(cfg)
    unit = round_time(parse_speeds(cfg.speeds, cfg.nodes, cfg.seed)) if timed(cfg) else None
    # A small network's ops are too small to share out: torch's threads would only wait on each
    # other (and, on a busy machine, on other processes).
    small = cfg.nodes * num_params(model) < SMALL_NETWORK
    with blocks.one_thread() if small else contextlib.nullcontext():
        if not decentralized:
            runs = []
        elif cfg.mode == "async":
            runs = [_run_async("decentralized", cfg, model, opt, data, topo, progress)]
        else:
            runs = [_run("decentralized", cfg, model, opt, data, topo, progress, opts=opts, device=dev,
                         round_time=unit, phases=phases)]
        if cfg.baseline == "local":
            runs.append(_run("local", cfg, model, opt, data, None, progress, opts=opts, device=dev,
                             phases=phases))
        elif cfg.baseline == "centralized":
            pooled = data.pooled()
            runs.append(_run("centralized", cfg, model, opt, pooled, None, progress,
                             batch_size=min(cfg.batch_size * cfg.nodes, len(pooled.y)), opts=opts,
                             device=dev, phases=phases))
    wall = time.perf_counter() - start
    phases["other"] = max(0.0, wall - sum(v for k, v in phases.items() if k != "other"))
    return SimResult(cfg, gap.value, num_params(model), runs, wall, device=dev, gap_method=gap.describe(),
                     phases=phases)


def baseline(cfg: SimConfig, name: str) -> RunResult:
    """Only the `name` baseline (local or centralized) of `cfg`: each node alone on its shard,
    or one model on the pooled shards, with the same model, optimizer and batch plan."""
    if name not in BASELINES[1:]:
        raise UserError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES[1:])}")
    return simulate(dataclasses.replace(cfg, baseline=name), decentralized=False).runs[0]


def _run(
    name: str,
    cfg: SimConfig,
    model: torch.nn.Module,
    opt: OptimConfig,
    data: NodeData,
    topo: Topology | None,
    progress: Progress | None,
    batch_size: int | None = None,
    opts: Robustness | None = None,
    device: str = "cpu",
    round_time: float | None = None,
    phases: dict[str, float] | None = None,
) -> RunResult:
    """One run: `topo` None means no communication (local baseline, or a single node).

    DP-SGD (`opts.dp`) applies to every run; attacks and faults only to runs that communicate.
    With `round_time` (the slowest node's local round) rows also hold the simulated time.
    """
    opts = opts or parse_robustness(cfg)
    bad = np.zeros(data.nodes, dtype=bool)
    if topo is not None and opts.attack is not None:
        bad = byzantine_nodes(data.nodes, opts.attack.fraction, cfg.seed)
        data = poisoned_data(opts.attack, data, bad)
    honest = torch.from_numpy(np.flatnonzero(~bad))
    if cfg.engine == "vectorized":
        engine = VectorizedEngine(model, data, opt, flatten(model), dp=opts.dp, seed=cfg.seed, name=cfg.model,
                                  device=device)
    else:
        engine = ReferenceEngine(model, data, opt, flatten(model), dp=opts.dp, seed=cfg.seed)
    batch = batch_size or cfg.batch_size
    plan = BatchPlan(data.sizes, batch, local_steps(cfg), cfg.local_epochs, cfg.seed)
    p = num_params(model)
    result = RunResult(name, byzantine=[int(k) for k in np.flatnonzero(bad)])
    budget = None if opts.dp is None else PrivacyBudget(opts.dp, data.sizes, batch)
    exchange = None if topo is None or opts.plain else Exchange(opts, engine.params(), bad, cfg.seed)
    subset = _eval_subset(data, cfg.seed)
    overlap = cfg.mode == "overlap" and topo is not None
    sent = 0.0
    counted: tuple[sp.csr_matrix | None, float] = (None, 0.0)  # (W, its bytes per node)
    phases = {} if phases is None else phases
    for t in range(cfg.rounds):
        faults = None if exchange is None else exchange.draw_faults(data.nodes)
        steps = plan.round(t) if faults is None else _offline_skip(plan.round(t), faults)
        if budget is not None:
            budget.add(steps)
        lap = time.perf_counter()
        start = engine.params().clone() if overlap else None
        losses = engine.local_round(steps)
        lap = _lap(phases, "training", lap)
        if topo is not None:
            if start is not None:  # mix the models the round started with (p2pfl.gossip.overlap)
                trained = engine.params()
                engine.set_params(start.clone())
            w = topo.mixing(t)
            if exchange is None:
                engine.mix(w)
                if w is not counted[0]:  # a static topology's W: counted once
                    counted = (w, _bytes_per_node(w, p))
                sent += counted[1]
            else:
                new, sent_now = exchange.step(engine.params(), w, faults)
                engine.set_params(new)
                sent += sent_now
            if start is not None:
                engine.set_params(with_local_change(engine.params(), start, trained))
        lap = _lap(phases, "communication", lap)
        if (t + 1) % cfg.eval_every == 0 or t + 1 == cfg.rounds:
            flat, bufs = engine.params(), engine.buffers()
            if bad.any():
                flat, bufs, losses = flat[honest], {k: b[honest] for k, b in bufs.items()}, losses[~bad]
            row, acc = _metrics(t + 1, model, flat, bufs, data, subset, losses, sent)
            result.node_accuracy = acc.tolist()
            if round_time is not None:
                row["time"] = (t + 1) * round_time
                result.timeline.append(_timeline_point(row, acc))
            if budget is not None:
                row["epsilon"] = budget.epsilon()
            result.rows.append(row)
            _lap(phases, "evaluation", lap)
        if progress is not None:
            progress(f"{name} rounds", t + 1, cfg.rounds)
    result.bytes_sent_per_node = sent
    result.final_params = engine.params().detach().clone()
    if budget is not None:
        result.epsilon, result.delta = budget.epsilon(), opts.dp.delta  # type: ignore[union-attr]
    return result


def _run_async(name: str, cfg: SimConfig, model: torch.nn.Module, opt: OptimConfig, data: NodeData,
               topo: Topology, progress: Progress | None) -> RunResult:
    """An asynchronous run (p2pfl.sim.asynchronous): each node does cfg.rounds local rounds at its
    own pace, so it ends when the synchronous run of `cfg` ends (cfg.rounds rounds of the slowest
    node's local round). It is evaluated at the same instants; a row's `round` is the synchronous
    round that ends then, `time` the instant."""
    speeds = parse_speeds(cfg.speeds, data.nodes, cfg.seed)
    unit = round_time(speeds)
    engine = ReferenceEngine(model, data, opt, flatten(model), seed=cfg.seed)
    plan = BatchPlan(data.sizes, cfg.batch_size, local_steps(cfg), cfg.local_epochs, cfg.seed)
    gossip = AsyncGossip(engine, topo, plan, speeds, cfg.staleness_alpha, cfg.max_staleness, cfg.rounds)
    message = num_params(model) * 4
    subset = _eval_subset(data, cfg.seed)
    result = RunResult(name)
    for t in range(cfg.rounds):
        gossip.advance((t + 1) * unit)
        if (t + 1) % cfg.eval_every == 0 or t + 1 == cfg.rounds:
            sent = gossip.messages * message / data.nodes
            row, acc = _metrics(t + 1, model, engine.params(), engine.buffers(), data, subset,
                                gossip.last_loss, sent)
            row["time"] = (t + 1) * unit
            row["stale_fraction"] = gossip.stats.as_dict()["stale_fraction"]
            result.node_accuracy = acc.tolist()
            result.timeline.append(_timeline_point(row, acc))
            result.rows.append(row)
        if progress is not None:
            progress(f"{name} rounds", t + 1, cfg.rounds)
    result.bytes_sent_per_node = gossip.messages * message / data.nodes
    result.final_params = engine.params().detach().clone()
    result.local_rounds = [int(k) for k in gossip.rounds]
    result.mix_stats = gossip.stats.as_dict()
    return result


def _eval_subset(data: NodeData, seed: int) -> torch.Tensor:
    """The fixed test rows on which each node's model is scored (at most MAX_EVAL_ROWS)."""
    n_test = len(data.y_test)
    rng = np.random.default_rng([seed, 0xE7A1])
    return torch.from_numpy(np.sort(rng.choice(n_test, min(n_test, MAX_EVAL_ROWS), replace=False)))


def _timeline_point(row: dict[str, float], acc: torch.Tensor) -> dict[str, object]:
    keys = ("time", "round", "averaged_model_accuracy", "mean_local_accuracy")
    return {**{k: row[k] for k in keys}, "node_accuracy": [round(float(a), 6) for a in acc]}


def _offline_skip(steps: list[Step], faults: RoundFaults) -> list[Step]:
    """The steps with every row of the offline nodes marked invalid (they do not train)."""
    online = faults.online[:, None]
    out = []
    for s in steps:
        valid = online if s.valid is None else s.valid & online
        out.append(Step(s.index, np.broadcast_to(valid, s.index.shape).copy()))
    return out


def _bytes_per_node(w: sp.csr_matrix, n_params: int) -> float:
    """Mean bytes a node sends this round: its out-degree times a float32 model."""
    off_diagonal = w.nnz - int(np.count_nonzero(w.diagonal()))
    return off_diagonal * n_params * 4 / w.shape[0]


def _metrics(t: int, model: torch.nn.Module, flat: torch.Tensor, buffers: dict[str, torch.Tensor],
             data: NodeData, subset: torch.Tensor, losses: np.ndarray, sent: float,
             ) -> tuple[dict[str, float], torch.Tensor]:
    """The metric row of round t, and each node's accuracy on the evaluation subset."""
    acc = node_accuracies(model, flat, data.x_test[subset], data.y_test[subset], buffers)
    avg = node_accuracies(model, flat.mean(dim=0, keepdim=True), data.x_test, data.y_test,
                          average_buffers(buffers))
    probs = probabilities(model, flat.mean(dim=0), data.x_test, average_buffers(buffers))
    figures = training_metrics(data.y_test.numpy(), probs)
    return {
        "round": t,
        "mean_local_accuracy": float(acc.mean()),
        "min_local_accuracy": float(acc.min()),
        "max_local_accuracy": float(acc.max()),
        "averaged_model_accuracy": float(avg[0]),
        "averaged_model_balanced_accuracy": float(figures["balanced_accuracy"]),
        "averaged_model_auroc": float(figures["auroc"]),
        "consensus_distance": consensus_distance(flat),
        "train_loss": float(np.nanmean(losses)) if not np.all(np.isnan(losses)) else math.nan,
        "mb_sent_per_node": sent / 1e6,
    }, acc
