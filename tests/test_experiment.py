"""`p2pfl experiment`: grid expansion, run keys, resuming, tables, workers and bad files."""

import csv
import math
from pathlib import Path

import pytest

from p2pfl.cli import main
from p2pfl.errors import UserError
from p2pfl.experiments import runner as experiment
from p2pfl.experiments.runner import load_experiment, plan_runs, run_experiment
from p2pfl.experiments.spec import run_key
from p2pfl.experiments.tables import markdown_table, run_metrics, summarize
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.consensus import measure_rounds

SIMULATIONS = Path(__file__).resolve().parents[1] / "simulations"

TINY = """
seeds = [0, 1]
baselines = ["centralized", "local"]
dataset = "breast_cancer"
model = "logreg"
rounds = 4
local_steps = 1
batch_size = 16
eval_every = 2

[grid]
nodes = [4]
partition = ["iid", "dirichlet:0.5"]
topology = ["ring", {topology = "regular", param = {d = 2}, label = "regular d=2"}]
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _tiny(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_quick_topologies_from_the_cli(tmp_path, capsys):
    out = tmp_path / "topo"
    assert main(["experiment", str(SIMULATIONS / "topologies.toml"), "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| nodes | partition | topology |" in captured.out
    results = _rows(out / "results.csv")
    assert [r["topology"] for r in results] == ["ring", "epidemic", "centralized", "local"]
    assert [r["run"] for r in results] == ["decentralized", "decentralized", "centralized", "local"]
    final = {r["topology"]: float(r["mean_local_accuracy"]) for r in results}
    assert final["epidemic"] > final["local"] + 0.3  # gossip helps on label-skewed data
    history = _rows(out / "history.csv")
    assert len(history) == 4 * 4  # 20 rounds, evaluated every 5
    for name in ("summary.csv", "summary.md", "accuracy.png", "consensus.png", "accuracy_vs_mb.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "results.csv").read_bytes()
    assert main(["experiment", str(SIMULATIONS / "topologies.toml"), "--quick", "--out", str(out)]) == 0
    assert "4 runs (4 already done, 0 run now)" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before


@pytest.mark.parametrize("name", ["spectral", "epidemic", "hospitals", "byzantine", "compression", "churn",
                                  "privacy"])
def test_every_experiment_file_runs_quick(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["experiment", str(SIMULATIONS / f"{name}.toml"), "--quick", "--out", str(out)]) == 0
    assert "0 already done" in capsys.readouterr().err
    exp = load_experiment(SIMULATIONS / f"{name}.toml", quick=True)
    assert {r["key"] for r in _rows(out / "results.csv")} == {r.key for r in plan_runs(exp)}


def test_baselines_run_once_per_panel_and_seed(tmp_path):
    exp = load_experiment(_tiny(tmp_path))
    plan = plan_runs(exp)
    assert exp.network_keys == ["topology"] and exp.panel_keys == ["nodes", "partition"]
    runs = [r.run for r in plan]
    assert runs.count("decentralized") == 2 * 2 * 2  # partitions x topologies x seeds
    assert runs.count("centralized") == runs.count("local") == 2 * 2  # partitions x seeds
    assert len({r.key for r in plan}) == len(plan)
    regular = next(r for r in plan if r.series == "regular d=2")
    assert regular.config.topology == "regular" and regular.config.param == ["d=2"]
    central = [r for r in plan if r.run == "centralized"]
    assert all(r.config.baseline == "centralized" and r.config.topology == "complete" for r in central)


def test_run_key_is_stable_and_covers_every_setting():
    cfg = SimConfig(dataset="digits", nodes=16, topology="ring", rounds=10, seed=1)
    assert run_key("train", "decentralized", cfg) == run_key("train", "decentralized", SimConfig(
        dataset="digits", nodes=16, topology="ring", rounds=10, seed=1, out="elsewhere"))
    assert run_key("train", "decentralized", cfg) == run_key("train", "decentralized", SimConfig(
        dataset="digits", nodes=16, topology="ring", rounds=10, seed=1, password_env="DB_PASSWORD"))
    others = [SimConfig(dataset="digits", nodes=16, topology="ring", rounds=10, seed=2),
              SimConfig(dataset="digits", nodes=16, topology="ring", rounds=10, seed=1, lr=0.1)]
    keys = {run_key("train", "decentralized", c) for c in [cfg, *others]}
    keys.add(run_key("train", "local", cfg))
    assert len(keys) == 4


def test_interrupted_sweep_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    exp = load_experiment(_tiny(tmp_path))
    out = tmp_path / "out"
    real = experiment.execute
    calls = []

    def flaky(job: str, on_round=None) -> str:
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job, on_round)

    monkeypatch.setattr(experiment, "execute", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, out)
    assert len(_rows(out / "results.csv")) == 3
    assert len(_rows(out / "history.csv")) == 3 * 2
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(experiment, "execute", real)
    report = run_experiment(exp, out)
    assert (report.planned, report.skipped, report.ran) == (16, 3, 13)
    assert len(_rows(out / "results.csv")) == 16
    planned = [r.key for r in plan_runs(exp)]
    assert [r["key"] for r in _rows(out / "results.csv")] == planned  # written in plan order


def test_worker_processes_give_the_same_results(tmp_path):
    exp = load_experiment(_tiny(tmp_path))
    run_experiment(exp, tmp_path / "one", jobs=1)
    run_experiment(exp, tmp_path / "two", jobs=2)
    for name in ("results.csv", "history.csv"):
        one, two = _rows(tmp_path / "one" / name), _rows(tmp_path / "two" / name)
        for row in one + two:
            row.pop("wall_seconds", None)
        assert one == two
    assert (tmp_path / "one" / "summary.md").read_text() == (tmp_path / "two" / "summary.md").read_text()


def test_rounds_to_target_uses_the_centralized_run_of_the_same_seed(tmp_path):
    exp = load_experiment(_tiny(tmp_path))
    plan = plan_runs(exp)
    results, history = [], []
    for run in plan:
        results.append({"key": run.key, "round": "4", "averaged_model_accuracy": "0.9",
                        "mean_local_accuracy": "0.8"})
        curve = {"decentralized": ["0.5", "0.9"], "centralized": ["0.9", "0.9"], "local": ["0.4", "0.5"]}
        for t, acc in zip((2, 4), curve[run.run], strict=True):
            history.append({"key": run.key, "round": str(t), "mean_local_accuracy": acc})
    metrics = run_metrics(exp, plan, results, history)
    by_run = {r.run: metrics[r.key]["rounds_to_target"] for r in plan}
    assert by_run == {"decentralized": 4, "centralized": 2, "local": math.inf}


def test_table_marks_runs_that_never_reach_the_target(tmp_path):
    exp = load_experiment(_tiny(tmp_path))
    out = tmp_path / "out"
    run_experiment(exp, out)
    table = markdown_table(exp, summarize(exp, plan_runs(exp), out))
    lines = table.splitlines()
    assert lines[0].startswith("| nodes | partition | topology | averaged-model acc |")
    assert len(lines) == 2 + 2 * 4  # header, rule, (2 topologies + 2 baselines) per partition
    assert " ± " in lines[2]
    assert (out / "summary.md").read_text().endswith(table)


def test_consensus_rounds_match_known_cases():
    complete = measure_rounds(SimConfig(nodes=16, topology="complete", rounds=1000))
    assert complete["measured_rounds"] == 1 and complete["spectral_gap"] == pytest.approx(1)
    one_peer = measure_rounds(SimConfig(nodes=16, topology="one_peer_exponential", rounds=1000))
    assert one_peer["measured_rounds"] == 4  # exact average after log2(n) rounds
    ring = measure_rounds(SimConfig(nodes=16, topology="ring", rounds=1000))
    assert 0.5 * ring["predicted_rounds"] < ring["measured_rounds"] <= ring["predicted_rounds"]
    capped = measure_rounds(SimConfig(nodes=64, topology="ring", rounds=50))
    assert capped["measured_rounds"] == math.inf


@pytest.mark.parametrize("text,message", [
    ("colour = 1\n", "unknown key 'colour'"),
    ("nodes = 'many'\n", "key 'nodes' must be an integer"),
    ("[grid]\nnodes = 16\n", "[grid] nodes must be a non-empty list"),
    ("[grid]\nnodes = [16, 'x']\n", "[grid] nodes[1]: key 'nodes' must be an integer"),
    ("[grid]\nsetup = ['a']\n", "'setup' is not a simulate setting, so its elements must be tables"),
    ("[grid]\ntopology = [{topology = 'ring'}, {topology = 'ring'}]\n", "same label"),
    ("seeds = [0, 'a']\n", "seeds must be a non-empty list of integers"),
    ("seed = 3\n", "use seeds = [...] instead of seed"),
    ("baselines = ['oracle']\n", "baselines must be a list of centralized, local"),
    ("columns = ['speed']\n", "unknown column 'speed'"),
    ("kind = 'fast'\n", "kind must be one of train, consensus"),
    ("nodes = 8\n[grid]\nnodes = [16]\n", "[grid] nodes sets nodes, which is also fixed"),
    ("[grid]\nnodes = [4]\n[quick.grid]\nlr = [0.1]\n", "[quick.grid] has lr, not in [grid]"),
    ("[grid]\ntopology = ['mesh']\n", "topology=mesh, seed=0: unknown topology 'mesh'"),
    ("nodes = 4\n[grid]\ntopology = [{topology = 'erdos_renyi', param = {p = 0.0}}]\n", "is disconnected"),
    ("nodes = 4\ndataset = 'csv:missing.csv'\n", "missing.csv: no such file"),
])
def test_bad_experiment_file_is_one_line_exit_2(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    quick = ["--quick"] if "quick" in text else []
    assert main(["experiment", str(path), *quick, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"p2pfl: error: {path}") and message in err[0], err


def test_bad_jobs_and_missing_file(tmp_path, capsys):
    assert main(["experiment", str(_tiny(tmp_path)), "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(UserError, match="no such config file"):
        load_experiment(tmp_path / "nope.toml")
