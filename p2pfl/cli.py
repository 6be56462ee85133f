"""The `p2pfl` command: parses arguments and calls into the packages."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from p2pfl import __version__
from p2pfl.errors import UserError


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"p2pfl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("p2pfl: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2pfl", description="Peer-to-peer federated learning for hospitals.")
    p.add_argument("--version", action="version", version=f"p2pfl {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    t = sub.add_parser("topology", help="describe a topology: degrees, spectral gap, rounds to mix")
    t.add_argument("name", help="ring, torus, complete, star, erdos_renyi, barabasi_albert, watts_strogatz, "
                   "regular, exponential, hypercube, one_peer_exponential, epidemic, or file:PATH")
    t.add_argument("--nodes", type=int, required=True)
    t.add_argument("--param", action="append", default=[], metavar="K=V", help="topology parameter")
    t.add_argument("--mixing", default="metropolis_hastings",
                   help="mixing weights: metropolis_hastings (default), max_degree, uniform")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=_cmd_topology)

    s = sub.add_parser("simulate", help="simulate decentralized training of N hospitals in one process")
    s.add_argument("--config", type=Path, help="TOML file with the same keys as the flags")
    s.add_argument("--dataset", help="breast_cancer, digits, synthetic[:k=v,...] or csv:PATH")
    s.add_argument("--label-column", help="label column of a CSV dataset (default: label)")
    s.add_argument("--site-column", help="site column of a CSV dataset (for --partition site)")
    s.add_argument("--model", help="logreg or mlp")
    s.add_argument("--hidden", help="MLP hidden sizes, e.g. 32,16")
    s.add_argument("--nodes", type=int)
    s.add_argument("--topology")
    s.add_argument("--param", action="append", metavar="K=V", help="topology parameter")
    s.add_argument("--mixing", help="metropolis_hastings, max_degree or uniform")
    s.add_argument("--partition", help="iid, dirichlet:ALPHA, quantity:ALPHA, site or shift:SIGMA")
    s.add_argument("--rounds", type=int)
    steps = s.add_mutually_exclusive_group()
    steps.add_argument("--local-steps", type=int)
    steps.add_argument("--local-epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--optimizer", help="sgd or adam")
    s.add_argument("--lr", type=float)
    s.add_argument("--momentum", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--engine", help="vectorized (default) or reference")
    s.add_argument("--baseline", help="none, centralized or local")
    s.add_argument("--eval-every", type=int)
    s.add_argument("--allow-disconnected", action="store_true", default=None)
    s.add_argument("--out", help="folder for metrics.csv, config.json and convergence.png")
    s.add_argument("--json", action="store_true", help="print one JSON summary to stdout")
    s.set_defaults(func=_cmd_simulate)
    return p


def _cmd_topology(args: argparse.Namespace) -> int:
    from p2pfl.gossip.mixing import predicted_rounds
    from p2pfl.gossip.topology import build_topology

    topo = build_topology(args.name, args.nodes, args.param, seed=args.seed, scheme=args.mixing)
    lo, mean, hi = topo.degree_stats()
    src, _ = topo.edges(0)
    gap = topo.spectral_gap()
    rounds = predicted_rounds(gap)
    info = {
        "topology": args.name,
        "params": topo.params,
        "nodes": topo.n,
        "edges": len(src) if topo.time_varying else len(src) // 2,
        "directed": topo.time_varying,
        "time_varying": topo.time_varying,
        "degree_min": lo,
        "degree_mean": mean,
        "degree_max": hi,
        "connected": topo.is_connected(),
        "mixing": args.mixing,
        "spectral_gap": gap,
        "predicted_rounds": rounds if math.isfinite(rounds) else None,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    kind = "directed edges per round" if topo.time_varying else "edges"
    print(f"{args.name}: {topo.n} nodes, {info['edges']} {kind}")
    print(f"degree min/mean/max: {lo} / {mean:.2f} / {hi}")
    print(f"connected: {'yes' if info['connected'] else 'NO'}")
    print(f"spectral gap ({args.mixing}): {gap:.6g}")
    print(f"rounds to shrink consensus error 1000x (ln(1000)/gap): "
          f"{'never' if not math.isfinite(rounds) else f'{rounds:.1f}'}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from p2pfl.config import sim_config
    from p2pfl.sim.report import summary, write_outputs
    from p2pfl.sim.runner import simulate

    flags = {k: v for k, v in vars(args).items() if k not in ("config", "json", "func")}
    cfg = sim_config(args.config, flags)
    with _progress() as progress:
        result = simulate(cfg, progress)
    if cfg.out:
        for path in write_outputs(result, Path(cfg.out)):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary(result)))
    else:
        _print_result(result)
    return 0


class _progress:
    """A rich progress bar on stderr, one bar per run; a no-op when stderr is not a terminal."""

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = Console(stderr=True)
        self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                            disable=not console.is_terminal, transient=False)
        self.tasks: dict[str, int] = {}
        self.bar.start()
        return self

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(f"{name} rounds", total=total)
        self.bar.update(self.tasks[name], completed=done)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = result.config
    table = Table(title=f"{cfg.dataset} / {cfg.model} / {cfg.nodes} nodes / {cfg.topology} / "
                  f"{cfg.partition} / {cfg.rounds} rounds")
    for col in ("run", "mean acc", "min acc", "avg-model acc", "consensus", "loss", "MB/node"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for run in result.runs:
        f = run.rows[-1]
        table.add_row(run.name, f"{f['mean_local_accuracy']:.4f}", f"{f['min_local_accuracy']:.4f}",
                      f"{f['averaged_model_accuracy']:.4f}", f"{f['consensus_distance']:.3g}",
                      f"{f['train_loss']:.4f}", f"{f['mb_sent_per_node']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"spectral gap {result.spectral_gap:.4g}, {result.n_params} parameters, "
                  f"{result.wall_seconds:.1f} s")
