import json
import subprocess
import sys

import pytest
import torch

from p2pfl.cli import main
from p2pfl.errors import EXIT_INVALID, EXIT_USAGE
from p2pfl.files.keys import save_key
from p2pfl.protocol.codec import encode
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.vectorized import VectorizedEngine

SMALL = ["simulate", "--dataset", "breast_cancer", "--model", "logreg", "--nodes", "4", "--topology",
         "ring", "--partition", "iid", "--rounds", "3", "--local-steps", "1", "--batch-size", "16",
         "--eval-every", "1"]


def test_topology_json(capsys):
    assert main(["topology", "ring", "--nodes", "12", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"nodes", "edges", "spectral_gap", "predicted_rounds"} <= set(info)
    assert info["nodes"] == 12 and info["edges"] == 12 and info["connected"]
    assert info["predicted_rounds"] == pytest.approx(6.907755 / info["spectral_gap"])
    assert info["spectral_gap_method"] == "dense (exact)"


def test_topology_text_and_params(capsys):
    assert main(["topology", "erdos_renyi", "--nodes", "50", "--param", "p=0.2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "50 nodes" in out and "spectral gap" in out and "connected: yes" in out


DISCONNECTED = ["topology", "erdos_renyi", "--nodes", "100", "--param", "p=0.05"]


def test_disconnected_topology_never_mixes(capsys):
    # its gap computes as ~4e-16, which once printed as 1.04e16 rounds
    assert main(DISCONNECTED) == 0
    out = capsys.readouterr().out
    assert "connected: NO" in out
    assert out.splitlines()[-1] == "rounds to shrink consensus error 1000x (ln(1000)/gap): never"
    assert main(DISCONNECTED + ["--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["connected"] is False and info["predicted_rounds"] is None


def _key_file(tmp_path, passphrase=None):
    key = generate_key()
    path = tmp_path / "node.key"
    save_key(key, path, passphrase)
    return key, path


def test_id_prints_the_peer_id_of_a_key_file(tmp_path, capsys, monkeypatch):
    key, path = _key_file(tmp_path, b"s3cret")
    monkeypatch.setenv("P2PFL_TEST_PASS", "s3cret")
    assert main(["id", "--key", str(path), "--passphrase-env", "P2PFL_TEST_PASS"]) == 0
    assert capsys.readouterr().out == peer_id_of(key) + "\n"


@pytest.mark.parametrize(("setup", "flags", "message"), [
    ("missing", [], "does not exist"),
    ("encrypted", [], "is encrypted: a passphrase is needed"),
    ("encrypted", ["--passphrase-env", "P2PFL_TEST_PASS"], "wrong passphrase for key file"),
    ("encrypted", ["--passphrase-env", "P2PFL_TEST_UNSET"], "P2PFL_TEST_UNSET (the passphrase for key"),
    ("readable", [], "has permissions 0644"),
    ("junk", [], "is not a PEM private key"),
])
def test_id_of_a_bad_key_file_is_one_line_exit_2(setup, flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("P2PFL_TEST_PASS", "wrong")
    monkeypatch.delenv("P2PFL_TEST_UNSET", raising=False)
    path = tmp_path / "node.key"
    if setup != "missing":
        _key_file(tmp_path, b"s3cret" if setup == "encrypted" else None)
    if setup == "readable":
        path.chmod(0o644)
    if setup == "junk":
        path.write_bytes(b"not a key")
    assert main(["id", "--key", str(path), *flags]) == EXIT_USAGE
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and message in err[0] and str(path) in err[0]


def test_inspect_exits_5_for_a_bad_signature_or_a_corrupt_payload(tmp_path, capsys):
    key, _ = _key_file(tmp_path)
    blob = bytearray(encode(key, consortium=consortium_of({"training": {"lr": 0.1}}), round=3,
                            fingerprint="cd" * 32, num_samples=10, weight=1.0,
                            tensors={"w": torch.arange(4.0)}))
    path = tmp_path / "update.bin"
    path.write_bytes(blob)
    assert main(["inspect", str(path)]) == 0
    assert "signature:     OK" in capsys.readouterr().out
    for pos, line in ((10, "signature:     INVALID"), (-1, "payload:       CORRUPT")):
        changed = bytearray(blob)
        changed[pos] ^= 1  # inside the signature, then inside the tensor
        path.write_bytes(changed)
        assert main(["inspect", str(path)]) == EXIT_INVALID
        out = capsys.readouterr().out
        assert line in out and "round:         3" in out  # the report is still printed


def test_simulate_json_and_out(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SMALL + ["--json", "--baseline", "centralized", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) >= {"config", "spectral_gap", "spectral_gap_method", "wall_seconds", "final"}
    assert set(summary["final"]) >= {"mean_local_accuracy", "min_local_accuracy",
                                     "averaged_model_accuracy", "consensus_distance", "train_loss"}
    assert summary["config"]["nodes"] == 4 and summary["baseline"]["name"] == "centralized"
    assert 0.5 < summary["final"]["mean_local_accuracy"] <= 1
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("run,round,mean_local_accuracy") and len(lines) == 1 + 3 + 3
    assert json.loads((out / "config.json").read_text())["config"]["rounds"] == 3
    assert (out / "convergence.png").read_bytes()[:4] == b"\x89PNG"


def test_config_file_and_flag_override(tmp_path, capsys):
    cfg = tmp_path / "sim.toml"
    cfg.write_text('dataset = "breast_cancer"\nmodel = "logreg"\nnodes = 4\ntopology = "ring"\n'
                   'rounds = 2\nlocal_steps = 1\nparam = {}\nhidden = [8]\n')
    assert main(["simulate", "--config", str(cfg), "--nodes", "5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["nodes"] == 5 and summary["config"]["rounds"] == 2


@pytest.mark.parametrize("engine", ["reference", "vectorized"])
def test_engine_flag_picks_the_engine_that_trains(engine, capsys, monkeypatch):
    trained = []
    for cls in (ReferenceEngine, VectorizedEngine):
        def spy(self, steps, _cls=cls, _orig=cls.local_round):
            trained.append(_cls.__name__)
            return _orig(self, steps)
        monkeypatch.setattr(cls, "local_round", spy)
    assert main(SMALL + ["--engine", engine, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["engine"] == engine
    expected = {"reference": "ReferenceEngine", "vectorized": "VectorizedEngine"}[engine]
    assert trained and set(trained) == {expected}


@pytest.mark.parametrize("extra,message", [
    (["--topology", "mesh"], "unknown topology 'mesh'"),
    (["--dataset", "mnist"], "unknown data source 'mnist'"),
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--partition", "zipf"], "unknown partition 'zipf'"),
    (["--nodes", "1000"], "fewer than the 1000 nodes"),
    (["--topology", "erdos_renyi", "--param", "p=0"], "disconnected; pass --allow-disconnected"),
    (["--engine", "gpu"], "unknown engine 'gpu'"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
    (["--hidden", "a,b"], "--hidden must be comma-separated integers"),
    (["--rounds", "0"], "--rounds must be at least 1"),
])
def test_bad_input_is_one_line_exit_2(extra, message, capsys):
    assert main(SMALL + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("p2pfl: error: ") and message in err[0]


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('nodes = "many"\n')
    assert main(["simulate", "--config", str(cfg)]) == 2
    assert f"{cfg}: key 'nodes' must be an integer" in capsys.readouterr().err
    cfg.write_text("colour = 1\n")
    assert main(["simulate", "--config", str(cfg)]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err
    cfg.write_text("nodes = \n")
    assert main(["simulate", "--config", str(cfg)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_disconnected_allowed_with_flag(capsys):
    args = SMALL + ["--topology", "erdos_renyi", "--param", "p=0", "--allow-disconnected", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["spectral_gap"] == pytest.approx(0, abs=1e-9)


def test_console_script_error_has_no_traceback(tmp_path):
    csv = tmp_path / "h.csv"
    csv.write_text("age,outcome\n1,0\n2,1\n")
    proc = subprocess.run([sys.executable, "-m", "p2pfl", *SMALL, "--dataset", f"csv:{csv}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"p2pfl: error: {csv}: no label column 'label' (columns: age, outcome)"


def test_simulate_json_says_where_the_time_went(capsys):
    assert main(SMALL + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    phases = summary["phase_seconds"]
    assert set(phases) == {"data", "topology", "gap", "training", "communication", "evaluation", "other"}
    assert all(v >= 0 for v in phases.values())
    assert sum(phases.values()) == pytest.approx(summary["wall_seconds"], abs=0.01)
