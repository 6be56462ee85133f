"""Simulator speed: vectorized vs reference engine, and the largest network 100 rounds fit in 60 s.

Workload: MLP (32 hidden units) on `synthetic` (64 rows per hospital, 32 features, 4 classes),
one local SGD step of batch 32 per round, exponential topology, Metropolis-Hastings weights.

Part 1 prints node-rounds per second of both engines on the same workload at 64 and 1,000 nodes
and their ratio (target: vectorized >= 30x at 1,000 nodes). Part 2 runs the whole
`p2pfl simulate` command (data generation, 100 rounds, final evaluation) in a fresh process for
growing N and prints wall time and peak memory, up to the first N over 60 s (target: >= 10,000
nodes). Usage: python benchmarks/bench_simulator.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.models import build_model
from p2pfl.learning.params import flatten
from p2pfl.learning.trainer import OptimConfig
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.runner import prepare
from p2pfl.sim.vectorized import VectorizedEngine

DATASET = "synthetic:samples=64,features=32,classes=4"
CLI_ARGS = ["--dataset", DATASET, "--model", "mlp", "--hidden", "32", "--topology", "exponential",
            "--partition", "site", "--rounds", "100", "--local-steps", "1", "--batch-size", "32",
            "--eval-every", "100", "--json"]
P2PFL = [sys.executable, "-m", "p2pfl", "simulate"]


def node_rounds_per_second(engine_cls: type, n: int, rounds: int) -> float:
    """Rounds of local training + mixing per second, times n (data preparation excluded)."""
    cfg = SimConfig(dataset=DATASET, nodes=n, topology="exponential", partition="site")
    ds, data, topo = prepare(cfg)
    model = build_model("mlp", ds.input_shape, ds.n_classes, (32,), seed=0)
    engine = engine_cls(model, data, OptimConfig("sgd", lr=0.05), flatten(model))
    plan = BatchPlan(data.sizes, 32, local_steps=1, seed=0)
    engine.local_round(plan.round(0))  # warm-up
    start = time.perf_counter()
    for t in range(1, rounds + 1):
        engine.local_round(plan.round(t))
        engine.mix(topo.mixing(t))
    return n * rounds / (time.perf_counter() - start)


def full_run(n: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `p2pfl simulate` with n nodes, in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(P2PFL + CLI_ARGS + ["--nodes", str(n)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"p2pfl simulate failed for {n} nodes")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\n== vectorized vs reference (node-rounds per second, same workload) ==")
    print(f"{'nodes':>6} {'reference':>12} {'vectorized':>12} {'ratio':>8}")
    for n, ref_rounds, vec_rounds in ((64, 20, 100), (1000, 3, 50)) if not args.quick else ((64, 5, 20),):
        ref = node_rounds_per_second(ReferenceEngine, n, ref_rounds)
        vec = node_rounds_per_second(VectorizedEngine, n, vec_rounds)
        print(f"{n:>6} {ref:>12,.0f} {vec:>12,.0f} {vec / ref:>7.1f}x")

    print("\n== largest network: `p2pfl simulate`, 100 rounds, whole process ==")
    print(f"{'nodes':>7} {'wall s':>8} {'peak MB':>9} {'node-rounds/s':>14}")
    sizes = [1000, 2000] if args.quick else [2500, 5000, 10000, 15000, 20000, 25000, 30000, 40000]
    best = 0
    for n in sizes:
        wall, peak = full_run(n)
        print(f"{n:>7} {wall:>8.1f} {peak:>9.0f} {n * 100 / wall:>14,.0f}", flush=True)
        if wall > 60:
            break
        best = n
    print(f"\nlargest N measured whose 100 rounds finish within 60 s: {best:,} nodes (target >= 10,000)")


if __name__ == "__main__":
    main()
