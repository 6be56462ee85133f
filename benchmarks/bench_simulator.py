"""Simulator speed: vectorized vs reference engine, 50,000 nodes x 100 rounds, a small network.

Workload: MLP (32 hidden units) on `synthetic` (64 rows per hospital, 32 features, 4 classes),
one local SGD step of batch 32 per round, exponential topology, Metropolis-Hastings weights.

Part 1 prints node-rounds per second of both engines on the same workload at 64 and 1,000 nodes
and their ratio, torch on one thread for both (target: vectorized >= 30x at 1,000 nodes).
Part 2 runs the whole `p2pfl simulate` command (data generation, 100 rounds, final evaluation)
in a fresh process for 10,000 and 50,000 nodes and prints wall time, peak memory and where the
time went (target: 50,000 nodes within 60 s). Part 3 times a small network, 8 nodes x 20
rounds of breast_cancer with an MLP of 32 and one local epoch, by the summary's `wall_seconds`:
the first run of a fresh `p2pfl simulate` process (which pays the imports), and the same run
repeated in one process (target: at most 25 ms).
The machine is shared: the load average is printed with the figures.
Usage: python benchmarks/bench_simulator.py [--quick]
"""

from __future__ import annotations

import argparse
import json
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
from p2pfl.sim.runner import prepare, simulate
from p2pfl.sim.vectorized import VectorizedEngine

DATASET = "synthetic:samples=64,features=32,classes=4"
CLI_ARGS = ["--dataset", DATASET, "--model", "mlp", "--hidden", "32", "--topology", "exponential",
            "--partition", "site", "--rounds", "100", "--local-steps", "1", "--batch-size", "32",
            "--eval-every", "100", "--json"]
SMALL_ARGS = ["--dataset", "breast_cancer", "--model", "mlp", "--hidden", "32", "--nodes", "8",
              "--rounds", "20", "--local-epochs", "1", "--json"]
SMALL = SimConfig(dataset="breast_cancer", model="mlp", hidden="32", nodes=8, rounds=20, local_epochs=1)
P2PFL = [sys.executable, "-m", "p2pfl", "simulate"]
LARGE_TARGET_S, SMALL_TARGET_MS = 60.0, 25.0


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


def fresh_run(args: list[str]) -> tuple[float, float, dict]:
    """Wall seconds and peak RSS (MB) of `p2pfl simulate ARGS` in a fresh process, and its JSON."""
    start = time.perf_counter()
    proc = subprocess.Popen(P2PFL + args, stdout=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"p2pfl simulate {' '.join(args)} failed")
    return wall, usage.ru_maxrss / 1024, json.loads(out)


def load() -> str:
    """The machine's 1, 5 and 15 minute load averages (other work slows every figure)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{load()}")
    print("\n== vectorized vs reference (node-rounds per second, same workload, torch on 1 thread) ==")
    print(f"{'nodes':>6} {'reference':>12} {'vectorized':>12} {'ratio':>8}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same for both; on a shared machine 2 threads stall on each other
    for n, ref_rounds, vec_rounds in ((64, 20, 100), (1000, 3, 50)) if not args.quick else ((64, 5, 20),):
        ref = node_rounds_per_second(ReferenceEngine, n, ref_rounds)
        vec = node_rounds_per_second(VectorizedEngine, n, vec_rounds)
        print(f"{n:>6} {ref:>12,.0f} {vec:>12,.0f} {vec / ref:>7.1f}x")
    torch.set_num_threads(threads)

    print("\n== large network: `p2pfl simulate`, 100 rounds, whole process ==")
    print(f"{'nodes':>7} {'wall s':>8} {'peak MB':>9} {'node-rounds/s':>14}  seconds per phase")
    sizes = [2000] if args.quick else [10000, 50000]
    for n in sizes:
        wall, peak, summary = fresh_run(CLI_ARGS + ["--nodes", str(n)])
        phases = ", ".join(f"{k} {v:.1f}" for k, v in summary["phase_seconds"].items())
        print(f"{n:>7} {wall:>8.1f} {peak:>9,.0f} {n * 100 / wall:>14,.0f}  {phases}", flush=True)
    if not args.quick:
        verdict = "PASS" if wall <= LARGE_TARGET_S else "FAIL"
        print(f"50,000 nodes x 100 rounds: {wall:.1f} s, peak {peak:,.0f} MB: {verdict} "
              f"(target <= {LARGE_TARGET_S:.0f} s; {load()})")

    print("\n== small network: 8 nodes x 20 rounds, breast_cancer, MLP 32, one local epoch ==")
    fresh = sorted(fresh_run(SMALL_ARGS)[2]["wall_seconds"] * 1000 for _ in range(3 if args.quick else 5))
    simulate(SMALL)  # the first run of this process pays the imports
    warm = sorted(simulate(SMALL).wall_seconds * 1000 for _ in range(10 if args.quick else 30))
    print(f"first run of a fresh process: median {fresh[len(fresh) // 2]:.1f} ms (best {fresh[0]:.1f})")
    print(f"repeated in one process:      median {warm[len(warm) // 2]:.1f} ms (best {warm[0]:.1f})")
    verdict = "PASS" if warm[len(warm) // 2] <= SMALL_TARGET_MS else "FAIL"
    print(f"small network: {warm[len(warm) // 2]:.1f} ms of wall_seconds: {verdict} "
          f"(target <= {SMALL_TARGET_MS:.0f} ms; {load()})")


if __name__ == "__main__":
    main()
