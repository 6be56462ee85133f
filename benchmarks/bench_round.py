"""Round time of a 4-node loopback network against local training time plus transfer time.

Four real `p2pfl node` processes (ring, MLP 256-256 on digits shards, 200 local steps of batch
64, one torch thread each), 8 rounds; the round time is the median time between one
round_done line and the next in their logs (all of a round's work: training, sending, waiting,
averaging, the checkpoint), round 0 (connection set-up) excluded.
Baseline, measured in the same run: the same local training in four plain processes started
together (same model, steps, shards, one thread each; no network, no protocol), which is what
this machine can train at once, and the time to deliver one update of that size over the same
libp2p stack (bench_transfer's method). Floor = the median round of that training + one
transfer; the overhead printed is round time / floor - 1 (target <= 20%): what the protocol adds
(codec, signatures, checks, averaging, checkpoint, waiting for the slowest neighbour). Each
node sends to 2 neighbours and receives from 2; the floor counts one transfer, as they overlap.
Both synchronous modes run: `sync` (mix after training) and `overlap` (send the round's
starting model while training; p2pfl.gossip.overlap). This VM's speed drifts by up to 40%
within minutes, so each repeat measures the training floor before and after its two network
runs and uses their mean, and the last lines give the median over the repeats.
Usage: python benchmarks/bench_round.py [--repeat N] [--nodes 4] [--hidden 256] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_transfer import _server, time_libp2p  # noqa: E402
from plans import edit_plans  # noqa: E402

from p2pfl.demo import DemoOptions, setup  # noqa: E402
from p2pfl.learning.models import build_model  # noqa: E402
from p2pfl.learning.params import num_params  # noqa: E402
from p2pfl.net.checkpoint import read_metrics  # noqa: E402

ROUNDS, BATCH = 8, 64
MODES = ("sync", "overlap")  # the synchronous round modes, measured in the same run


@dataclass(frozen=True)
class Workload:
    """The network and its local training."""

    nodes: int = 4
    hidden: int = 256  # two hidden layers of this width
    steps: int = 200  # local steps per round

    def argv(self) -> list[str]:
        return ["--nodes", str(self.nodes), "--hidden", str(self.hidden), "--steps", str(self.steps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1,
                        help="pairs of network runs, each with its own floor")
    parser.add_argument("--nodes", type=int, default=Workload.nodes)
    parser.add_argument("--hidden", type=int, default=Workload.hidden, help="width of the two hidden layers")
    parser.add_argument("--steps", type=int, default=Workload.steps, help="local steps per round")
    parser.add_argument("--train-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Workload(args.nodes, args.hidden, args.steps)
    if args.train_worker is not None:
        print(json.dumps(train_rounds(work, args.train_worker)))
        return
    hidden = (work.hidden, work.hidden)
    update_bytes = num_params(build_model("mlp", 64, 10, hidden)) * 4 + 1024
    print(f"{work.nodes} nodes, ring, MLP {work.hidden}-{work.hidden} ({update_bytes / 1e6:.2f} MB update), "
          f"{work.steps} local steps, {ROUNDS} rounds (round 0 excluded), {os.cpu_count()} CPUs")
    overheads: dict[str, list[float]] = {mode: [] for mode in MODES}
    transfer = transfer_seconds(update_bytes)
    print(f"one update transfer {transfer * 1000:.1f} ms")
    for k in range(args.repeat):
        before = statistics.median(train_together(work))
        rounds = {mode: network_rounds(work, mode) for mode in MODES}
        after = statistics.median(train_together(work))
        floor = (before + after) / 2 + transfer
        print(f"repeat {k + 1}: {work.nodes} processes training together {before * 1000:.0f} ms, then "
              f"{after * 1000:.0f} ms; floor {floor * 1000:.0f} ms")
        for mode, (round_s, train_s) in rounds.items():
            overheads[mode].append(round_s / floor - 1)
            print(f"  gossip.mode = {mode:<8} median round {round_s * 1000:4.0f} ms (training inside "
                  f"{train_s * 1000:3.0f} ms): overhead {round_s / floor - 1:+.1%}", flush=True)
    for mode, values in overheads.items():
        print(f"gossip.mode = {mode:<8} overhead, median of {len(values)}: {statistics.median(values):+.1%} "
              f"(range {min(values):+.0%} to {max(values):+.0%}; target <= 20%)")


def network_rounds(work: Workload, mode: str) -> tuple[float, float]:
    """Median round and local training seconds of the network in gossip.mode `mode` (round 0
    excluded)."""
    folder = Path(tempfile.mkdtemp(prefix="p2pfl-bench-round-"))
    names = [f"hospital-{i + 1}" for i in range(work.nodes)]
    opt = DemoOptions(nodes=work.nodes, rounds=ROUNDS, dataset="digits", partition="iid", folder=folder,
                      round_timeout=60.0)
    configs = setup(folder, names, opt)
    edit_plans(configs, {"model": {"hidden": [work.hidden, work.hidden]}, "gossip": {"mode": mode},
                         "training": {"local_steps": work.steps, "batch_size": BATCH}})
    procs = [subprocess.Popen([sys.executable, "-m", "p2pfl", "node", "--config", str(c)],
                              stdout=subprocess.DEVNULL, stderr=(c.parent / "node.log").open("w"))
             for c in configs]
    if any(p.wait(timeout=600) for p in procs):
        raise SystemExit(f"a node failed; see {folder}/*/node.log")
    cycles, trains = [], []
    for name in names:
        done = [datetime.fromisoformat(line.split()[0]) for line in
                (folder / name / "node.log").read_text().splitlines() if "event=round_done" in line]
        cycles += [(b - a).total_seconds() for a, b in zip(done, done[1:], strict=False)]
        trains += [r["train_seconds"] for r in read_metrics(folder / name / "state")[1:]]
    return statistics.median(cycles), statistics.median(trains)


def transfer_seconds(update_bytes: int) -> float:
    server, addr = _server("libp2p")
    try:
        return trio.run(time_libp2p, addr, bytes(update_bytes), 5)
    finally:
        server.kill()
        server.wait()


def train_together(work: Workload) -> list[float]:
    """Per-round training seconds of one plain process per node training at once (round 0
    excluded)."""
    workers = [subprocess.Popen([sys.executable, __file__, "--train-worker", str(i), *work.argv()],
                                stdout=subprocess.PIPE, text=True) for i in range(work.nodes)]
    times = []
    for w in workers:
        out, _ = w.communicate(timeout=600)
        times += json.loads(out)[1:]
    return times


def train_rounds(work: Workload, shard: int) -> list[float]:
    """Seconds of each round's local training of one node's shard, one torch thread."""
    import time

    import torch

    from p2pfl.learning.batches import BatchPlan
    from p2pfl.learning.local import load_local
    from p2pfl.learning.trainer import OptimConfig, make_optimizer, train_steps

    torch.set_num_threads(1)
    data = load_local("digits", shard, work.nodes, partition_spec="iid")
    model = build_model("mlp", data.input_shape, data.n_classes, (work.hidden, work.hidden))
    opt = make_optimizer(model, OptimConfig("sgd", 0.05))
    plan = BatchPlan(data.plan_sizes, BATCH, work.steps, seed=0)
    times = []
    for t in range(ROUNDS):
        batches = [s.index[data.plan_row] for s in plan.round(t)]
        start = time.perf_counter()
        train_steps(model, opt, data.x_train, data.y_train, batches)
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
