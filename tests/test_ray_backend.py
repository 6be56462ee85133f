"""`p2pfl experiment --backend ray`: the runs as Ray tasks on a Ray cluster give the rows of `--jobs 1`,
resume the same way, and every way of failing is one line (or the run's error, as a local run's).

One local Ray cluster (2 CPUs, loopback only) is started for the module in its own process; the
tests reach it with --address or RAY_ADDRESS as they would reach a real cluster.
"""

import csv
import importlib.util
import os
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from p2pfl.cli import main
from p2pfl.experiments import ray_backend

# Not imported here: this process imports ray only once the cluster fixture has set DRIVER_ENV.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")

ROOT = Path(__file__).resolve().parents[1]
# A Ray that is no cluster (127.0.0.1 only), and a driver that sends the token (~/.ray/auth_token)
# that the cluster's start wrote: Ray never sends it to an explicit address unless told.
DRIVER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
START_TIMEOUT_S = 120
TINY = """
seeds = [0]
dataset = "breast_cancer"
model = "logreg"
rounds = 4
local_steps = 1
batch_size = 16
eval_every = 2

[grid]
nodes = [4]
topology = ["ring", "complete"]
"""
TIMING = ("wall_seconds",)  # the only column that is not a result (history.csv has none)

CLUSTER = """
import sys, ray
ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the test closes stdin
ray.shutdown()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """HOST:PORT of a local Ray cluster in a child process, shut down after the module."""
    log = tmp_path_factory.mktemp("ray") / "cluster.log"
    with pytest.MonkeyPatch.context() as mp, log.open("w") as err:
        for key, value in DRIVER_ENV.items():
            mp.setenv(key, value)  # before this process imports ray
        mp.delenv("RAY_ADDRESS", raising=False)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
            line = proc.stdout.readline().strip() if ready else ""
            assert line, f"the local Ray cluster did not start: {log.read_text()[-2000:]}"
            port = line.rpartition(":")[2]
            yield f"127.0.0.1:{port}"
        finally:
            proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def jobs_1(experiment_file):
    """The results folder of the grid run with --jobs 1."""
    out = experiment_file.parent / "jobs1"
    assert main(["experiment", str(experiment_file), "--jobs", "1", "--out", str(out)]) == 0
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in TIMING:
            row.pop(key, None)
    return rows


@needs_ray
def test_a_2_task_grid_through_ray_gives_the_rows_of_jobs_1(cluster, jobs_1, experiment_file, capsys):
    out = experiment_file.parent / "ray"
    assert main(["experiment", str(experiment_file), "--backend", "ray", "--address", cluster,
                 "--out", str(out)]) == 0
    assert "2 runs (0 already done, 2 run now)" in capsys.readouterr().err
    assert len(_rows(out / "results.csv")) == 2
    for name in ("results.csv", "history.csv"):
        assert _rows(out / name) == _rows(jobs_1 / name)
    assert (out / "summary.md").read_text() == (jobs_1 / "summary.md").read_text()

    before = (out / "results.csv").read_bytes()
    assert main(["experiment", str(experiment_file), "--backend", "ray", "--address", cluster,
                 "--out", str(out)]) == 0
    assert "2 runs (2 already done, 0 run now)" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before


@needs_ray
def test_an_interrupted_sweep_resumes_through_ray_address(cluster, jobs_1, experiment_file, monkeypatch,
                                                          capsys):
    out = experiment_file.parent / "resumed"
    shutil.copytree(jobs_1, out)
    results = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(results[:2]))  # header and the first run: the second was lost
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    assert main(["experiment", str(experiment_file), "--backend", "ray", "--out", str(out)]) == 0
    assert "2 runs (1 already done, 1 run now) " in capsys.readouterr().err
    for name in ("results.csv", "history.csv"):
        assert _rows(out / name) == _rows(jobs_1 / name)


@needs_ray
def test_a_failing_run_is_reported_as_a_local_one(cluster, experiment_file, capsys):
    path = experiment_file.parent / "failing.toml"
    # Too few neighbours on a ring for this trim: found when the run starts, in its worker.
    path.write_text(TINY.replace('topology = ["ring", "complete"]', 'topology = ["ring"]')
                    .replace("[grid]", 'aggregator = "trimmed_mean:b=2"\n\n[grid]'))
    errors = []
    for backend in (["--jobs", "1"], ["--backend", "ray", "--address", cluster]):
        assert main(["experiment", str(path), *backend, "--out", str(path.parent / "failing")]) == 2
        errors.append(capsys.readouterr().err.strip().splitlines())
    assert errors[0] == errors[1]
    assert len(errors[0]) == 1
    run = "run nodes=4, topology=ring, seed=0"
    assert errors[0][0].startswith(f"p2pfl: error: {path}: {run}: aggregator trimmed_mean"), errors


@needs_ray
def test_a_task_whose_worker_dies_comes_back_as_the_runs_error(cluster):
    with ray_backend.open_session(1, cluster) as session:
        results = list(session.run(['{"run": "one"}'], lambda job: os._exit(3)))
    assert len(results) == 1 and results[0][0] == 0
    assert results[0][1].startswith('{"error": "the Ray task failed: ')
    assert '"user": false' in results[0][1]


@needs_ray
def test_cuda_on_a_cluster_without_a_gpu_is_one_line(cluster, experiment_file, capsys):
    assert main(["experiment", str(experiment_file), "--backend", "ray", "--address", cluster,
                 "--device", "cuda", "--out", str(experiment_file.parent / "cuda")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "p2pfl: error: --device cuda: the Ray cluster has no GPU; use --device cpu or auto"]


def test_without_ray_the_backend_says_what_to_install(experiment_file, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["experiment", str(experiment_file), "--backend", "ray",
                 "--out", str(experiment_file.parent / "no-ray")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "p2pfl: error: --backend ray needs Ray: install p2pfl[cluster] (pip install ray==2.60.0)"]


def test_a_cluster_that_cannot_be_reached_is_one_line(experiment_file, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    assert main(["experiment", str(experiment_file), "--backend", "ray", "--address", address,
                 "--out", str(experiment_file.parent / "unreachable")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"p2pfl: error: cannot reach the Ray cluster at {address}: "), err


def test_a_local_ray_is_started_for_the_command_with_jobs_cpus(experiment_file, monkeypatch, capsys):
    calls = []

    class FakeRay:
        @staticmethod
        def init(**kwargs):
            calls.append(kwargs)
            raise RuntimeError("no room for a Ray here\nmore detail")

    monkeypatch.setitem(sys.modules, "ray", FakeRay)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["experiment", str(experiment_file), "--backend", "ray", "--jobs", "3",
                 "--out", str(experiment_file.parent / "fake")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "p2pfl: error: cannot start or connect to a local Ray: no room for a Ray here"]
    assert len(calls) == 1
    assert {k: calls[0][k] for k in ("address", "num_cpus", "include_dashboard", "log_to_driver")} == {
        "address": "local", "num_cpus": 3, "include_dashboard": False, "log_to_driver": False}


def test_address_goes_with_the_ray_backend(experiment_file, jobs_1, capsys):
    for out in (experiment_file.parent / "local", jobs_1):  # even with nothing left to run
        assert main(["experiment", str(experiment_file), "--address", "127.0.0.1:6379",
                     "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            "p2pfl: error: --address names a cluster: it goes with --backend ray, not local"]
