"""`p2pfl node`, `init`, `keygen`, `demo`: set-up errors, clean stop, the whole demo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from p2pfl.cli import main
from p2pfl.errors import UserError
from p2pfl.net.checkpoint import read_metrics
from p2pfl.settings.load import node_settings


def test_init_writes_templates_that_load_and_keeps_an_existing_plan(tmp_path, capsys):
    out = tmp_path / "node.toml"
    assert main(["init", "--out", str(out), "--name", "st-marys"]) == 0
    settings = node_settings(out)
    assert settings.node.name == "st-marys" and settings.gossip.round_timeout == 30.0
    assert (tmp_path / "plan.toml").is_file()
    assert main(["init", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    # a second hospital joins with the consortium's plan, kept as it is
    shared = tmp_path / "consortium" / "plan.toml"
    shared.parent.mkdir()
    shared.write_text('[training]\nlr = 0.01\n')
    other = tmp_path / "general" / "node.toml"
    other.parent.mkdir()
    assert main(["init", "--out", str(other), "--name", "general", "--plan", str(shared)]) == 0
    assert shared.read_text() == '[training]\nlr = 0.01\n'
    joined = node_settings(other)
    assert joined.training.lr == 0.01 and joined.node.plan == "../consortium/plan.toml"


@pytest.mark.parametrize("edit,message", [
    (("\n[gossip]\n", "\n[gossip]\ncolour = 1\n"), "unknown key gossip.colour"),
    (("rounds = 50", 'rounds = "many"'), "training.rounds must be an integer"),
    (("round_timeout = 30.0", "round_timeout = -1.0"), "gossip.round_timeout must be positive"),
    (('kind = "mlp"', 'kind = "resnet"'), "model.kind is not valid: unknown model 'resnet'"),
    (('source = "digits"', 'source = "csv:patients.csv"'), "task.classes must list the label values"),
    (("\n[model]\n", "\n[modle]\n"), "unknown section [modle]"),
])
def test_bad_node_config_is_one_error_naming_file_and_key(tmp_path, write_config, edit, message):
    path = write_config(edit)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        node_settings(path)
    assert str(tmp_path) in str(err.value)


def test_node_with_missing_key_exits_2_without_traceback(write_config):
    path = write_config()
    proc = subprocess.run([sys.executable, "-m", "p2pfl", "node", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("p2pfl: error: ") and "node.key" in proc.stderr


def test_sigterm_stops_cleanly_and_keeps_the_checkpoint(consortium):
    c = consortium(nodes=3, rounds=50, round_timeout=2.0)
    c.configure("gossip", "min_peers = 1")  # the start quorum: one neighbour is enough
    c.start("hospital-1", "hospital-2")  # hospital-3 absent: rounds wait for the deadline
    c.wait_for(lambda: len(c.metrics("hospital-1")) >= 1, what="a finished round")
    c.signal("hospital-1", signal.SIGTERM)
    assert c.wait("hospital-1") == {"hospital-1": 0}
    assert "event=stopping signal=SIGTERM" in c.log("hospital-1")
    state = torch.load(c.folder / "hospital-1" / "state" / "checkpoint.pt", weights_only=True)
    assert state["round"] == len(c.metrics("hospital-1")) >= 1


def test_demo_json(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "--nodes", "3", "--rounds", "3", "--dir", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in report["hospitals"]] == ["hospital-1", "hospital-2", "hospital-3"]
    for h in report["hospitals"]:  # the report is what each node wrote, after real training
        rows = read_metrics(folder / h["name"] / "state")
        assert h["rounds"] == len(rows) == 3
        assert h["accuracy"] == rows[-1]["val_accuracy"] > 0.85
        assert h["curve"] == [r["val_accuracy"] for r in rows]
    assert report["mean_accuracy"] == pytest.approx(sum(h["accuracy"] for h in report["hospitals"]) / 3)
    # baselines trained too (an untrained model scores about 0.4-0.6 on breast_cancer)
    assert report["centralized_accuracy"] > 0.85 and report["mean_local_only_accuracy"] > 0.7
    assert (folder / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    assert oct((folder / "hospital-1" / "node.key").stat().st_mode & 0o777) == "0o600"
    assert main(["demo", "--dir", str(folder)]) == 2  # not empty: refused


def test_demo_deals_out_a_table_and_drafts_its_plan(tmp_path, capsys):
    rows = "".join(f"{1000 + i},{30 + i % 40},{'f' if i % 2 else 'm'},{'yes' if (i % 40) > 20 else 'no'}\n"
                   for i in range(120))
    table = tmp_path / "cohort.csv"
    table.write_text("patient_id,age,sex,outcome\n" + rows)
    folder = tmp_path / "demo"
    args = ["demo", "--dataset", f"csv:{table}", "--label-column", "outcome", "--nodes", "2", "--rounds", "2",
            "--dir", str(folder), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [h["rounds"] for h in report["hospitals"]] == [2, 2]
    held = [(folder / f"hospital-{k}" / "data.csv").read_text().splitlines()[1:] for k in (1, 2)]
    assert len(held[0]) == len(held[1]) == 60 and not set(held[0]) & set(held[1])  # own patients
    plan = (folder / "hospital-1" / "plan.toml").read_text()
    assert 'classes = ["no", "yes"]' in plan and 'ignore = ["patient_id"]' in plan
    assert '{ name = "sex", type = "categorical", categories = ["f", "m"] }' in plan
    assert "event=preprocessing_agreed members=2" in (folder / "hospital-1" / "node.log").read_text()
