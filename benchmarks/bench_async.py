"""Synchronous vs asynchronous gossip when one hospital is slow: time to accuracy, same run.

Simulated part (`simulated`): 16 simulated hospitals (digits, MLP 32 hidden, exponential graph,
iid, one local SGD step per round), one of them 4x slower (`--speeds slowest:4`: its local round
takes 4 simulated time units, every other one 1). The synchronous run does `--rounds` rounds of
4 units each (everyone waits for the slowest); in the asynchronous run (`--mode async`) each node
does `--rounds` local rounds at its own pace, as the node daemon does, so it ends when the
synchronous run ends. Per seed and as the median over seeds, printed: the simulated time at which
the mean local accuracy first reaches 95% of the synchronous run's final mean local accuracy,
sync vs async and their ratio, and both runs' final accuracies (target: async at least 1.5x
faster, final accuracy within 1 point). Simulated time does not depend on this machine, so the
figures are the same on every machine (wall seconds are printed for information).

Real part (`--network`, a few minutes): four `p2pfl node` processes with one slowed 4x the same
way, from outside (benchmarks/bench_async_network.py, which also runs on its own).
Usage: python benchmarks/bench_async.py [--seeds 0,1,2] [--rounds 100] [--speeds slowest:4]
       [--partition iid] [--quick] [--network]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from p2pfl.settings.sim import SimConfig
from p2pfl.sim.report import time_to_accuracy
from p2pfl.sim.runner import RunResult, simulate

SETUP = dict(dataset="digits", model="mlp", hidden="32", nodes=16, topology="exponential", local_steps=1,
             eval_every=1)
TARGET = 0.95  # of the synchronous run's final mean local accuracy
KEY = "mean_local_accuracy"  # what every hospital holds (the averaged model is nobody's)


def _run(args: argparse.Namespace, seed: int, mode: str) -> tuple[RunResult, float]:
    start = time.perf_counter()
    cfg = SimConfig(**SETUP, rounds=args.rounds, speeds=args.speeds, partition=args.partition, mode=mode,
                    seed=seed)
    return simulate(cfg).main, time.perf_counter() - start


def simulated(args: argparse.Namespace) -> dict[str, float]:
    """The simulated consortium, sync vs async per seed; returns the medians over seeds."""
    print(f"simulated: {SETUP['nodes']} hospitals, --speeds {args.speeds}, --partition {args.partition}, "
          f"{args.rounds} rounds; time to {TARGET:.0%} of sync's final mean local accuracy")
    print("seed | sync time | async time | speed-up | sync final | async final | async - sync (points) "
          "| stale left out | wall s sync / async")
    ratios, gaps = [], []
    for seed in args.seeds:
        sync, wall_s = _run(args, seed, "sync")
        asyn, wall_a = _run(args, seed, "async")
        goal = TARGET * sync.final[KEY]
        t_sync, t_async = time_to_accuracy(sync.rows, goal, KEY), time_to_accuracy(asyn.rows, goal, KEY)
        ratio = t_sync / t_async
        gap = 100 * (asyn.final[KEY] - sync.final[KEY])
        ratios.append(ratio)
        gaps.append(gap)
        print(f"{seed} | {t_sync:.0f} | {t_async:.0f} | {ratio:.2f}x | {sync.final[KEY]:.4f} | "
              f"{asyn.final[KEY]:.4f} | {gap:+.2f} | {asyn.mix_stats['stale_fraction']:.1%} | "
              f"{wall_s:.1f} / {wall_a:.1f}")
    out = {"speedup": statistics.median(ratios), "accuracy_gap_points": statistics.median(gaps)}
    print(f"median over seeds: async reaches the target {out['speedup']:.2f}x sooner (target >= 1.5x); "
          f"final mean local accuracy {out['accuracy_gap_points']:+.2f} points vs sync "
          f"(target: within 1 point)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--rounds", type=int, default=100, help="synchronous rounds of budget (default 100)")
    parser.add_argument("--speeds", default="slowest:4", help="--speeds (default slowest:4)")
    parser.add_argument("--partition", default="iid", help="--partition (default iid)")
    parser.add_argument("--quick", action="store_true", help="one seed, 20 rounds: a smoke test")
    parser.add_argument("--network", action="store_true", help="also the real 4-node network "
                        "(bench_async_network.py with its defaults)")
    args = parser.parse_args()
    args.seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    if args.quick:
        args.rounds = 20
    torch.set_num_threads(1)  # small models: threads only fight over the cores
    simulated(args)
    if args.network:
        import subprocess
        import sys
        from pathlib import Path

        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_async_network.py"))], check=True)


if __name__ == "__main__":
    main()
