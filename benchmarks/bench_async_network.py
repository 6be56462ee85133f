"""Sync vs async gossip on a real 4-node network with one node slowed 4x (issue 15, item 1).

Four `p2pfl node` processes on 127.0.0.1 (ring, digits split iid as in the simulated part, or
--partition, MLP 32, the demo's set-up otherwise),
once with `gossip.mode = "sync"` and once with `"async"`, in the same run. Once every node has
passed its start quorum, hospital-4 is slowed down 4x from outside: this script stops it
(SIGSTOP) for 3/4 of every 100 ms and lets it run (SIGCONT) for the rest, so every part of it
(training, sending, answering) runs at a quarter of its speed; nothing in the node knows.
Printed, per mode: the wall time from then until the mean of the nodes' latest validation
accuracies first reaches 95% of the sync run's final mean (from the `event=round_done` lines'
time stamps), and the final mean accuracy; then the ratio sync / async (target: at least 1.5)
and the accuracy difference (target: within 1 point).

Usage: python benchmarks/bench_async_network.py [--rounds 30] [--local-steps 10]
       [--max-staleness 16] [--alpha 0.5] [--partition iid|dirichlet:A]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from plans import edit_plans

from p2pfl.demo import DemoOptions, setup

SLOW = "hospital-4"
PERIOD = 0.1  # seconds of one stop/continue cycle
SLOWDOWN = 4.0
LINE = re.compile(r"^(\S+) info node=(\S+) event=round_done round=(\d+) val_accuracy=([0-9.e-]+)")


def slow_down(pid: int, stop: threading.Event) -> None:
    """Run the process `pid` for 1/SLOWDOWN of every PERIOD until `stop`."""
    run = PERIOD / SLOWDOWN
    while not stop.is_set():
        try:
            os.kill(pid, signal.SIGCONT)
            time.sleep(run)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(PERIOD - run)
        except ProcessLookupError:
            return
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def run(mode: str, rounds: int, local_steps: int, max_staleness: int = 16,
        alpha: float = 0.5, partition: str = "iid") -> dict[str, list[tuple[float, float]]]:
    """Each node's (seconds since the first node started, validation accuracy) per round."""
    folder = Path(tempfile.mkdtemp(prefix=f"p2pfl-async-{mode}-"))
    names = [f"hospital-{i + 1}" for i in range(4)]
    opt = DemoOptions(nodes=4, rounds=rounds, folder=folder, round_timeout=60.0, dataset="digits",
                      partition=partition)
    configs = dict(zip(names, setup(folder, names, opt), strict=True))
    edit_plans(configs.values(), {"gossip": {"mode": mode, "max_staleness": max_staleness,
                                             "staleness_alpha": alpha},
                                  "training": {"local_steps": local_steps}})
    procs = {}
    for name, config in configs.items():
        log = (folder / name / "node.log").open("w")
        procs[name] = subprocess.Popen([sys.executable, "-m", "p2pfl", "node", "--config", str(config)],
                                       stdout=log, stderr=log)
    logs = [folder / n / "node.log" for n in names]
    while not all("event=start_quorum" in log.read_text() for log in logs):
        if any(p.poll() is not None for p in procs.values()):
            raise SystemExit(f"{mode}: a node exited before training (logs in {folder})")
        time.sleep(0.05)
    t0 = time.time()
    stop = threading.Event()
    slower = threading.Thread(target=slow_down, args=(procs[SLOW].pid, stop), daemon=True)
    slower.start()
    try:
        for name, proc in procs.items():
            if proc.wait(timeout=1800) != 0:
                log = folder / name / "node.log"
                raise SystemExit(f"{mode}: {name} exited {proc.returncode} (see {log})")
    finally:
        stop.set()
        slower.join()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    series = {n: _series(folder / n / "node.log") for n in names}
    return {n: [(t - t0, a) for t, a in s] for n, s in series.items()}


def _series(log: Path) -> list[tuple[float, float]]:
    out = []
    for line in log.read_text().splitlines():
        m = LINE.match(line)
        if m:
            out.append((datetime.fromisoformat(m.group(1)).timestamp(), float(m.group(4))))
    return out


def mean_over_time(series: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """(time, mean of each node's latest accuracy) at every round end (a node not heard yet: 0)."""
    events = sorted((t, n, a) for n, s in series.items() for t, a in s)
    latest = dict.fromkeys(series, 0.0)
    out = []
    for t, n, a in events:
        latest[n] = a
        out.append((t, sum(latest.values()) / len(latest)))
    return out


def time_to(curve: list[tuple[float, float]], target: float) -> float:
    return next((t for t, a in curve if a >= target), float("inf"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--max-staleness", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=0.5, help="gossip.staleness_alpha")
    ap.add_argument("--partition", default="iid",
                    help="how the digits are split: iid (as in bench_async.py's simulated part) "
                    "or dirichlet:A")
    args = ap.parse_args()
    curves, finals = {}, {}
    for mode in ("sync", "async"):
        series = run(mode, args.rounds, args.local_steps, args.max_staleness, args.alpha, args.partition)
        curves[mode] = mean_over_time(series)
        finals[mode] = sum(s[-1][1] for s in series.values()) / len(series)
        print(f"  {mode:5s} final accuracy per node: "
              + ", ".join(f"{n} {s[-1][1]:.4f}" for n, s in sorted(series.items())), flush=True)
    target = 0.95 * finals["sync"]
    times = {mode: time_to(curves[mode], target) for mode in curves}
    print(f"real 4-node ring, {args.partition}, {SLOW} slowed {SLOWDOWN:g}x, {args.rounds} rounds, "
          f"target accuracy "
          f"{target:.4f} (95% of sync's final {finals['sync']:.4f})")
    for mode in ("sync", "async"):
        print(f"  {mode:5s}: reached the target after {times[mode]:6.2f} s; final mean accuracy "
              f"{finals[mode]:.4f}; all rounds done after {curves[mode][-1][0]:6.2f} s")
    print(f"  async is {times['sync'] / times['async']:.2f}x faster to the target (target >= 1.5x); "
          f"final accuracy {100 * (finals['async'] - finals['sync']):+.2f} points (target within 1)")


if __name__ == "__main__":
    main()
