"""`--device cpu|cuda|auto`: cpu is today's numbers bit for bit, cuda without a GPU is one line, auto
says which it took, the device is no part of a run's key, and (with a GPU) cuda trains as cpu does."""

import json

import pytest
import torch

from p2pfl.cli import main
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.runner import simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["simulate", "--dataset", "breast_cancer", "--model", "logreg", "--nodes", "4", "--topology",
         "ring", "--partition", "iid", "--rounds", "3", "--local-steps", "1", "--batch-size", "16",
         "--eval-every", "1", "--json"]
# DP-SGD noise, momentum and a robust aggregator: every place the engine's state is drawn or handed out.
CONFIGS = {
    "plain": SimConfig(dataset="breast_cancer", model="mlp", hidden="8", nodes=4, rounds=6, local_steps=2,
                       batch_size=16, eval_every=3, seed=1),
    "dp_momentum_trimmed": SimConfig(dataset="breast_cancer", model="mlp", hidden="8", nodes=6,
                                     topology="complete", rounds=6, local_steps=2, batch_size=16,
                                     eval_every=3, momentum=0.9, dp="noise=0.5,clip=1.0",
                                     aggregator="trimmed_mean:b=1", seed=2),
}
EXPERIMENT = """
seeds = [0]
dataset = "breast_cancer"
model = "logreg"
rounds = 2
local_steps = 1
batch_size = 16
eval_every = 2

[grid]
nodes = [4]
topology = ["ring"]
"""


@pytest.fixture
def no_gpu(monkeypatch):
    """This process sees no CUDA GPU, whatever the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _summary(capsys, *extra: str) -> dict:
    assert main([*SMALL, *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", CONFIGS)
def test_cpu_is_the_default_bit_for_bit(name):
    default, cpu = simulate(CONFIGS[name]), simulate(CONFIGS[name], device="cpu")
    assert default.device == cpu.device == "cpu"
    assert default.main.rows == cpu.main.rows
    assert torch.equal(default.main.final_params, cpu.main.final_params)


def test_cpu_summary_names_the_device(capsys):
    default, cpu = _summary(capsys), _summary(capsys, "--device", "cpu")
    assert default["device"] == cpu["device"] == "cpu"
    assert default["final"] == cpu["final"]


def test_cuda_without_a_gpu_is_one_line_exit_2(no_gpu, capsys):
    assert main([*SMALL, "--device", "cuda"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "p2pfl: error: --device cuda: no CUDA GPU here (torch.cuda.is_available() is false); "
        "use --device cpu or auto"]


def test_auto_without_a_gpu_is_cpu_and_says_so(no_gpu, capsys):
    auto, cpu = _summary(capsys, "--device", "auto"), _summary(capsys, "--device", "cpu")
    assert auto["device"] == "cpu"
    assert auto["final"] == cpu["final"]


def test_auto_on_this_machine(capsys):
    assert _summary(capsys, "--device", "auto")["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_reference_engine_runs_on_the_cpu(capsys):
    assert main([*SMALL, "--engine", "reference", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda runs the vectorized engine only" in err[0], err
    assert _summary(capsys, "--engine", "reference", "--device", "auto")["device"] == "cpu"


def test_the_device_is_no_part_of_a_run_key(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    out = str(tmp_path / "out")
    assert main(["experiment", str(path), "--out", out]) == 0
    assert "1 runs (0 already done, 1 run now) in " in capsys.readouterr().err
    before = (tmp_path / "out" / "results.csv").read_bytes()
    assert main(["experiment", str(path), "--out", out, "--device", "auto"]) == 0
    assert "1 runs (1 already done, 0 run now) in " in capsys.readouterr().err
    assert (tmp_path / "out" / "results.csv").read_bytes() == before


def test_an_experiment_on_cuda_without_a_gpu_is_one_line(no_gpu, tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    assert main(["experiment", str(path), "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "p2pfl: error: --device cuda: no CUDA GPU here (torch.cuda.is_available() is false); "
        "use --device cpu or auto"]
    assert not (tmp_path / "out" / "results.csv").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", CONFIGS)
def test_cuda_trains_as_the_cpu_does(name):
    cpu, cuda = simulate(CONFIGS[name], device="cpu"), simulate(CONFIGS[name], device="cuda")
    assert cuda.device == "cuda"
    assert [r["round"] for r in cuda.main.rows] == [r["round"] for r in cpu.main.rows]
    for key in ("averaged_model_accuracy", "mean_local_accuracy"):
        assert cuda.main.final[key] == pytest.approx(cpu.main.final[key], abs=0.02), key
    assert cuda.main.final["train_loss"] == pytest.approx(cpu.main.final["train_loss"], rel=0.05, abs=1e-3)
    assert cuda.main.final_params.device.type == "cpu"  # handed back on the CPU
    assert torch.allclose(cuda.main.final_params, cpu.main.final_params, atol=1e-3)
