"""Asynchronous gossip in the simulator (p2pfl.sim.asynchronous) and per-node speeds (sim/speeds)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from p2pfl.cli import main
from p2pfl.experiments.runner import load_experiment, plan_runs
from p2pfl.experiments.spec import run_key
from p2pfl.experiments.store import read_rows
from p2pfl.experiments.tables import run_metrics
from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.models import build_model
from p2pfl.learning.params import flatten
from p2pfl.learning.trainer import OptimConfig
from p2pfl.settings.load import sim_config
from p2pfl.settings.sim import SimConfig, check_sim_table
from p2pfl.settings.toml_out import plan_template
from p2pfl.sim.asynchronous import AsyncGossip
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.report import summary, time_to_accuracy
from p2pfl.sim.runner import prepare, simulate
from p2pfl.sim.speeds import parse_speeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS = dict(dataset="digits", nodes=8, topology="ring", rounds=10, eval_every=5, seed=3)


def run(**kw):
    return simulate(SimConfig(**{**DIGITS, **kw})).main


@pytest.mark.parametrize("topology", ["ring", "one_peer_exponential"])
def test_async_with_equal_speeds_is_d_psgd(topology):
    # Every node ends its round at the same instant: all send, then all mix fresh models (age 0)
    # with W (of that round), whatever the staleness settings.
    sync = run(engine="reference", topology=topology)
    for kw in ({}, {"speeds": "lognormal:0", "max_staleness": 0, "staleness_alpha": 3.0}):
        a = run(mode="async", topology=topology, **kw)
        assert (a.final_params - sync.final_params).abs().max().item() < 1e-5
        assert a.local_rounds == [10] * 8 and a.mix_stats["stale_left_out"] == 0
        assert [r["round"] for r in a.rows] == [r["round"] for r in sync.rows] == [5, 10]
        for ra, rs in zip(a.rows, sync.rows, strict=True):
            assert ra["mean_local_accuracy"] == pytest.approx(rs["mean_local_accuracy"], abs=1e-3)
            assert ra["mb_sent_per_node"] == pytest.approx(rs["mb_sent_per_node"])


def test_the_same_seed_gives_the_same_async_run():
    a = run(mode="async", speeds="lognormal:0.5")
    b = run(mode="async", speeds="lognormal:0.5")
    assert torch.equal(a.final_params, b.final_params) and a.rows == b.rows
    assert a.local_rounds == b.local_rounds and a.timeline == b.timeline
    c = run(mode="async", speeds="lognormal:0.5", seed=4)
    assert c.local_rounds != a.local_rounds or not torch.equal(c.final_params, a.final_params)


def _gossip(speeds, max_staleness, on_mix=None, rounds=None):
    cfg = SimConfig(**DIGITS)
    ds, data, topo = prepare(cfg)
    model = build_model("mlp", ds.input_shape, ds.n_classes, (32,), seed=0)
    engine = ReferenceEngine(model, data, OptimConfig(), flatten(model))
    plan = BatchPlan(data.sizes, 32, 1, None, seed=0)
    return AsyncGossip(engine, topo, plan, np.array(speeds, dtype=float), 0.5, max_staleness, rounds,
                       on_mix=on_mix)


def test_a_node_4x_slower_does_a_quarter_of_the_local_rounds():
    gossip = _gossip([4.0] + [1.0] * 7, 4)
    gossip.advance(20.0)
    assert gossip.rounds.tolist() == [5] + [20] * 7
    # with an end, each node stops after its own rounds (as the daemon): the slow one last
    gossip = _gossip([4.0] + [1.0] * 7, 4, rounds=10)
    gossip.advance(10.0)
    assert gossip.rounds.tolist() == [2] + [10] * 7
    gossip.advance(1000.0)
    assert gossip.rounds.tolist() == [10] * 8 and gossip.time == 1000.0
    a = run(mode="async", speeds="slowest:4")  # ends with the synchronous run: 10 rounds of 4 units
    assert a.local_rounds == [10] * 8 and [r["time"] for r in a.rows] == [20.0, 40.0]
    sync = run(speeds="slowest:4")
    assert [r["time"] for r in sync.rows] == [20.0, 40.0] and not sync.local_rounds


def test_a_model_older_than_max_staleness_never_gets_weight():
    mixes = []
    gossip = _gossip([5.0] + [1.0] * 7, 2, lambda t, i, held: mixes.append((t, i, held)))
    gossip.advance(30.0)
    held = [(age, w) for _, _, h in mixes for _, age, w in h]
    stale = [w for age, w in held if age > 2]
    assert stale and all(w == 0 for w in stale)  # node 0's models, at its fast neighbours
    assert all(w > 0 for age, w in held if age <= 2)
    assert gossip.stats.stale == len(stale) and gossip.stats.held == len(held)
    # node 0 mixes its neighbours' newer models (age 0) at their full weight
    assert all(age == 0 and w > 0 for _, i, h in mixes if i == 0 for _, age, w in h)
    # a neighbour not heard from yet is left out: at time 1 node 1 holds node 2's model, not node 0's
    first = next((t, h) for t, i, h in mixes if i == 1)
    assert first[0] == 1.0 and [j for j, _, _ in first[1]] == [2]
    assert gossip.rounds.tolist() == [6] + [30] * 7


def test_the_staleness_discount_weights_a_mix():
    mixes = []
    gossip = _gossip([2.0] + [1.0] * 7, 4, lambda t, i, held: mixes.append((t, i, held)))
    gossip.advance(6.0)
    t, i, held = next(m for m in mixes if m[1] == 1 and m[0] == 5.0)  # node 1 (ring: 0 and 2)
    ages = dict((j, age) for j, age, _ in held)
    assert ages == {0: 3, 2: 0}  # node 0 sent after its round 2 (time 4), node 1 is at round 5
    w = {j: weight for j, _, weight in held}
    assert w[0] / w[2] == pytest.approx(4 ** -0.5)  # (1 + 3) ** -alpha against (1 + 0) ** -alpha


def test_async_reaches_the_sync_accuracy_in_the_same_simulated_time():
    kw = dict(nodes=8, topology="exponential", rounds=30, eval_every=1, local_steps=2, speeds="slowest:4")
    sync, asyn = run(**kw), run(mode="async", **kw)
    goal = 0.95 * sync.final["mean_local_accuracy"]
    assert time_to_accuracy(asyn.rows, goal) < time_to_accuracy(sync.rows, goal)
    assert asyn.final["mean_local_accuracy"] >= sync.final["mean_local_accuracy"] - 0.01
    assert asyn.rows[-1]["time"] == sync.rows[-1]["time"] == 120.0


def test_a_timed_summary_has_the_time_series():
    result = simulate(SimConfig(**{**DIGITS, "mode": "async", "speeds": "1,1,1,2,1,1,1,1", "rounds": 4,
                                   "eval_every": 1}))
    s = summary(result)
    assert s["node_round_times"] == [1, 1, 1, 2, 1, 1, 1, 1] and s["sync_round_time"] == 2.0
    assert [p["time"] for p in s["timeline"]] == [2.0, 4.0, 6.0, 8.0]
    assert all(len(p["node_accuracy"]) == 8 for p in s["timeline"])
    assert set(s["time_to_accuracy"]) == {"0.5", "0.8", "0.9", "0.95"}
    assert s["local_rounds"] == [4] * 8 and s["mixes"]["mixes"] == 32
    plain = simulate(SimConfig(**{**DIGITS, "rounds": 2}))
    assert "timeline" not in summary(plain) and "time" not in plain.main.rows[0]


def test_speeds_forms():
    assert parse_speeds(None, 3, 0).tolist() == [1, 1, 1]
    assert parse_speeds("slowest:4", 3, 0).tolist() == [4, 1, 1]
    assert parse_speeds(" 1, 2.5,3 ", 3, 0).tolist() == [1, 2.5, 3]
    many = parse_speeds("lognormal:0.5", 2001, 7)
    assert np.median(many) == pytest.approx(1.0, abs=0.05)
    assert np.std(np.log(many)) == pytest.approx(0.5, abs=0.03)
    assert np.array_equal(many, parse_speeds("lognormal:0.5", 2001, 7))
    assert not np.array_equal(many, parse_speeds("lognormal:0.5", 2001, 8))
    assert check_sim_table({"speeds": [1, 1, 4]}, "x.toml") == {"speeds": "1,1,4"}


def test_the_defaults_keep_every_run_key():
    cfg = SimConfig(**DIGITS)
    explicit = replace(cfg, mode="sync", max_staleness=4, staleness_alpha=0.5, speeds=None)
    key = run_key("train", "decentralized", cfg)
    assert key == run_key("train", "decentralized", explicit)
    assert key != run_key("train", "decentralized", replace(cfg, mode="async"))


def test_a_plan_in_async_mode_simulates_async(tmp_path):
    plan = tmp_path / "plan.toml"
    text = plan_template()
    assert 'mode = "sync"' in text
    plan.write_text(text.replace('mode = "sync"', 'mode = "async"')
                    .replace("max_staleness = 4", "max_staleness = 2"))
    cfg = sim_config(None, {"plan": str(plan)})
    assert cfg.mode == "async" and cfg.max_staleness == 2


@pytest.mark.parametrize("extra,message", [
    (["--speeds", "1,2"], "--speeds lists 2 times but there are 4 nodes"),
    (["--speeds", "1,2,3,4,5"], "--speeds lists 5 times but there are 4 nodes"),
    (["--speeds", "1,0,1,1"], "--speeds times must be positive numbers, got 0"),
    (["--speeds", "1,a,1,1"], "--speeds must be a number, got 'a'"),
    (["--speeds", "lognormal:-1"], "--speeds lognormal:SIGMA needs SIGMA >= 0"),
    (["--speeds", "slowest:0"], "--speeds slowest:F needs a positive F"),
    (["--speeds", "gamma:2"], "unknown form 'gamma'"),
    (["--mode", "eventual"], "--mode must be sync, overlap, async, got 'eventual'"),
    (["--max-staleness", "-1"], "--max-staleness must be at least 0"),
    (["--staleness-alpha", "-0.5"], "--staleness-alpha must be 0 or more"),
    (["--mode", "async", "--dp", "noise=1,clip=1"], "does not model --dp"),
    (["--mode", "async", "--aggregator", "median"], "does not model --aggregator median"),
    (["--mode", "async", "--device", "cuda"], "--device cuda: --mode async trains one node at a time"),
    (["--mode", "overlap", "--compression", "topk:fraction=0.1"], "topk (CHOCO) needs --mode sync"),
])
def test_bad_async_input_is_one_line_exit_2(extra, message, capsys):
    small = ["simulate", "--dataset", "breast_cancer", "--model", "logreg", "--nodes", "4", "--topology",
             "ring", "--rounds", "2"]
    assert main(small + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("p2pfl: error: ") and message in err[0], err


def test_time_to_sync_target_in_the_committed_async_experiment():
    sims = Path(__file__).resolve().parents[1] / "simulations"
    exp = load_experiment(sims / "async.toml")
    plan = plan_runs(exp)
    folder = sims / "results" / "async"
    metrics = run_metrics(exp, plan, read_rows(folder / "results.csv"), read_rows(folder / "history.csv"))
    history = read_rows(folder / "history.csv")
    for run in plan:
        if run.config.mode != "sync":
            continue
        rows = [r for r in history if r["key"] == run.key]
        goal = 0.95 * float(rows[-1]["mean_local_accuracy"])
        first = next(r for r in rows if float(r["mean_local_accuracy"]) >= goal)
        assert metrics[run.key]["time_to_sync_target"] == float(first["time"])
        slowest = max(parse_speeds(run.config.speeds, 16, run.seed))
        assert float(first["time"]) == pytest.approx(float(first["round"]) * slowest, rel=1e-5)
