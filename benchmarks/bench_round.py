"""Round time of a 4-node loopback network against local training time plus transfer time.

Four real `p2pfl node` processes (ring, MLP 256-256 on digits shards, 200 local steps of batch
64, one torch thread each), 8 rounds; the median round time comes from their metrics.jsonl.
Baseline, measured in the same run: the local training of one round by one node alone (same
model, steps, one thread), and the time to deliver one update of that size over the same
libp2p stack (bench_transfer's method). Four nodes on a machine with fewer than four cores
cannot train at once, so the floor is training x max(1, nodes / cores) + transfer; the
overhead printed is round time / floor - 1 (target <= 20%): what the protocol adds (codec,
signatures, checks, averaging, checkpoint, waiting). Each node sends to 2 neighbours and
receives from 2; the floor counts one transfer, as they overlap.
Usage: python benchmarks/bench_round.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_transfer import _server, time_libp2p  # noqa: E402

from p2pfl.demo import DemoOptions, setup  # noqa: E402
from p2pfl.learning.models import build_model  # noqa: E402
from p2pfl.learning.params import num_params  # noqa: E402
from p2pfl.net.checkpoint import read_metrics  # noqa: E402

ROUNDS, HIDDEN, STEPS, BATCH = 8, 256, 200, 64


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="p2pfl-bench-round-"))
    names = [f"hospital-{i + 1}" for i in range(4)]
    opt = DemoOptions(nodes=4, rounds=ROUNDS, dataset="digits", partition="iid", folder=folder,
                      round_timeout=60.0)
    configs = setup(folder, names, opt)
    for c in configs:
        text = c.read_text().replace("hidden = [32]", f"hidden = [{HIDDEN}, {HIDDEN}]")
        text = text.replace("local_steps = 5", f"local_steps = {STEPS}").replace("batch_size = 16",
                                                                                   f"batch_size = {BATCH}")
        c.write_text(text)
    procs = [subprocess.Popen([sys.executable, "-m", "p2pfl", "node", "--config", str(c)],
                              stdout=subprocess.DEVNULL, stderr=(c.parent / "node.log").open("w"))
             for c in configs]
    if any(p.wait(timeout=600) for p in procs):
        raise SystemExit(f"a node failed; see {folder}/*/node.log")
    rounds, trains = [], []
    for name in names:
        rows = read_metrics(folder / name / "state")[1:]  # round 0 includes connection set-up
        rounds += [r["seconds"] for r in rows]
        trains += [r["train_seconds"] for r in rows]
    alone = train_alone()
    update_bytes = num_params(build_model("mlp", 64, 10, (HIDDEN, HIDDEN))) * 4 + 1024
    server, addr = _server("libp2p")
    try:
        transfer = trio.run(time_libp2p, addr, bytes(update_bytes), 5)
    finally:
        server.kill()
        server.wait()
    round_s, train_s = statistics.median(rounds), statistics.median(trains)
    share = max(1.0, len(names) / (os.cpu_count() or 1))
    floor = alone * share + transfer
    print(f"4 nodes, ring, MLP {HIDDEN}-{HIDDEN} ({update_bytes / 1e6:.2f} MB update), "
          f"{STEPS} local steps, {ROUNDS} rounds (round 0 excluded), {os.cpu_count()} CPUs")
    print(f"median round time                      {round_s * 1000:8.1f} ms")
    print(f"local training, one node alone         {alone * 1000:8.1f} ms")
    print(f"local training inside the network      {train_s * 1000:8.1f} ms (sharing the CPUs)")
    print(f"one update transfer                    {transfer * 1000:8.1f} ms")
    print(f"floor = training alone x {share:.1f} + transfer {floor * 1000:8.1f} ms")
    print(f"overhead = round time / floor - 1 = {round_s / floor - 1:+.1%} (target <= 20%)")


def train_alone() -> float:
    """Median time of one round's local training by one node, one torch thread."""
    import time

    import numpy as np
    import torch

    from p2pfl.learning.batches import BatchPlan
    from p2pfl.learning.local import load_local
    from p2pfl.learning.trainer import OptimConfig, make_optimizer, train_steps

    torch.set_num_threads(1)
    data = load_local("digits", 0, 4, partition_spec="iid")
    model = build_model("mlp", data.input_shape, data.n_classes, (HIDDEN, HIDDEN))
    opt = make_optimizer(model, OptimConfig("sgd", 0.05))
    plan = BatchPlan(data.plan_sizes, BATCH, STEPS, seed=0)
    times = []
    for t in range(ROUNDS):
        batches = [s.index[data.plan_row] for s in plan.round(t)]
        start = time.perf_counter()
        train_steps(model, opt, data.x_train, data.y_train, batches)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


if __name__ == "__main__":
    main()
