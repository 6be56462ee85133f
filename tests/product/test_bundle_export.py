"""Model bundles from a node's state folder (built without the network): the card, predictions
equal to the node's own model, ONNX equal to torch on raw rows, tampered files refused."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from bundle_tables import HEADER, patients, write_csv

from p2pfl.cli import main
from p2pfl.demo import DemoOptions, setup
from p2pfl.errors import UserError
from p2pfl.files.keys import load_key
from p2pfl.files.roster_file import load_roster
from p2pfl.net import checkpoint
from p2pfl.net.assembly import assemble
from p2pfl.net.eventlog import EventLog
from p2pfl.net.shared_settings import shared_sections
from p2pfl.product import graph
from p2pfl.product.bundle import ONNX, WEIGHTS, load_bundle
from p2pfl.product.export import export_node
from p2pfl.product.predict import predict
from p2pfl.protocol.consortium import consortium_of
from p2pfl.settings.load import node_settings


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """Two hospitals' folders; hospital-1's node is built, its weights moved off the initial
    ones (seeded) and checkpointed at round 3, as after training."""
    folder = tmp_path_factory.mktemp("consortium")
    table = write_csv(folder / "all.csv", HEADER, patients())
    configs = setup(folder, ["hospital-1", "hospital-2"],
                    DemoOptions(nodes=2, rounds=3, dataset=f"csv:{table}", label_column="outcome"))
    settings = node_settings(configs[0])
    parts = assemble(settings, load_key(folder / "hospital-1" / "node.key"),
                     load_roster(folder / "roster.toml"), EventLog("hospital-1", io.StringIO()))
    learner = parts.learner
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in learner.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    row = {"round": 2, "val_accuracy": 0.5, "train_loss": 0.7, "epsilon": None}
    checkpoint.save(parts.state_dir, 3, learner.model, learner.optimizer, metrics_row=row,
                    preprocessing=learner.data.statistics.to_dict())
    parts.state_lock.release()
    out = folder / "bundle"
    bundle = export_node(configs[0], out)
    return {"folder": folder, "config": configs[0], "settings": settings, "parts": parts,
            "bundle": bundle, "out": out}


def test_the_bundle_holds_weights_onnx_and_a_card_without_patient_data(node):
    out, settings = node["out"], node["settings"]
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx", "model.safetensors"]
    assert (out / WEIGHTS).read_bytes()[8:9] == b"{"  # safetensors: a JSON header, no pickle
    card = json.loads((out / "model.json").read_text())
    roster = load_roster(node["folder"] / "roster.toml")
    assert card["consortium"]["id"] == consortium_of(shared_sections(settings, roster)).id.hex()
    assert [m["name"] for m in card["consortium"]["members"]] == ["hospital-1", "hospital-2"]
    assert card["consortium"]["members"][0]["peer_id"] == roster.members[0].peer_id
    assert card["round"] == 3 and card["task"] == {"label_column": "outcome", "classes": ["no", "yes"]}
    assert [c["name"] for c in card["features"]["columns"]] == ["age", "bmi", "sex", "smoker"]
    assert card["features"]["columns"][3]["categories"] == ["current", "former", "never"]
    assert card["plan"]["model"]["kind"] == "mlp" and card["plan"]["features"]["missing"] == "impute"
    assert card["model"]["fingerprint"] == node["parts"].learner.fingerprint
    assert card["sites"][0]["name"] == "hospital-1" and card["sites"][0]["metrics"]["val_accuracy"] == 0.5
    assert card["sites"][0]["train_rows"] == len(node["parts"].learner.data.y_train)
    assert card["preprocessing"]["statistics"] == node["parts"].learner.data.statistics.to_dict()
    assert set(card["files"]) == {WEIGHTS, ONNX} and card["onnx"]["max_abs_difference"] <= 1e-5
    text = (out / "model.json").read_text()
    assert "P5000" not in text and "P5001" not in text  # no row of the table


def test_predictions_equal_the_nodes_own_model(node, monkeypatch):
    learner = node["parts"].learner
    monkeypatch.chdir(node["folder"] / "hospital-1")
    pred = predict(load_bundle(node["out"]), "data.csv", id_column="patient_id")
    with torch.no_grad():
        own = torch.softmax(learner.model(learner.data.x_val), dim=1).numpy()
    val = learner.table.test
    np.testing.assert_allclose(pred.probs[val], own, rtol=0, atol=1e-6)
    assert np.array_equal(pred.y[val], learner.data.y_val.numpy())
    assert pred.id_name == "patient_id" and all(i.startswith("P") for i in pred.ids)


def test_onnx_equals_torch_on_raw_rows_with_missing_cells_and_categories(node):
    bundle = node["bundle"]
    x = node["parts"].learner.table.table.x.copy()
    x[::7, 0] = np.nan  # more gaps, in numeric and categorical columns
    x[3::11, 3] = np.nan
    assert np.isnan(x).any() and set(np.unique(x[:, 2][~np.isnan(x[:, 2])])) == {0.0, 1.0}
    onnx = graph.run_onnx((node["out"] / ONNX).read_bytes(), x)
    torch_probs = bundle.predict_proba(x)
    assert onnx.shape == (len(x), 2)
    assert np.abs(onnx - torch_probs).max() <= 1e-5
    assert np.allclose(onnx.sum(axis=1), 1, atol=1e-6)
    model = (node["out"] / ONNX).read_bytes()
    for n in (1, 5):  # any batch size
        assert np.abs(graph.run_onnx(model, x[:n]) - torch_probs[:n]).max() <= 1e-5


@pytest.mark.parametrize("name", [WEIGHTS, ONNX])
@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_truncated_or_edited_file_is_refused_naming_it(node, tmp_path, capsys, name, damage):
    copy = tmp_path / "b"
    copy.mkdir()
    for p in node["out"].iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    data = bytearray((copy / name).read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data[-5] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(UserError, match=name):
        load_bundle(copy)
    code = main(["predict", str(copy), str(node["folder"] / "hospital-1" / "data.csv")])
    err = capsys.readouterr().err
    assert code == 2 and name in err and len(err.strip().splitlines()) == 1


def test_export_refuses_a_folder_in_use_and_a_missing_best_round(node, tmp_path, capsys):
    assert main(["export", "--config", str(node["config"]), "--out", str(node["out"])]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["export", "--config", str(node["config"]), "--out", str(tmp_path / "b"),
                 "--round", "best"]) == 2
    assert "best.pt" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_export_of_a_node_without_a_checkpoint_is_refused(node, tmp_path):
    config = node["folder"] / "hospital-2" / "node.toml"
    with pytest.raises(UserError, match="no checkpoint yet"):
        export_node(config, tmp_path / "b")


def test_an_edited_model_card_is_refused(node, tmp_path, capsys):
    copy = tmp_path / "b"
    copy.mkdir()
    for p in node["out"].iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    card = json.loads((copy / "model.json").read_text())
    card["task"]["classes"] = list(reversed(card["task"]["classes"]))  # swaps what each output means
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match="model.json: its digest does not match its content"):
        load_bundle(copy)
    assert main(["evaluate", str(copy), str(node["folder"] / "hospital-1" / "data.csv")]) == 2
    assert "digest does not match" in capsys.readouterr().err
