"""`p2pfl simulate --export DIR`: the averaged model of the decentralized run as a bundle."""

from __future__ import annotations

import json

import numpy as np
import torch
from bundle_tables import HEADER, patients, write_csv

from p2pfl.cli import main
from p2pfl.learning.models import build_model, parse_hidden
from p2pfl.learning.params import load_flat
from p2pfl.product import graph
from p2pfl.product.bundle import ONNX, load_bundle
from p2pfl.product.predict import predict
from p2pfl.settings.load import sim_config
from p2pfl.sim.runner import prepare, simulate


def test_simulate_export_writes_the_averaged_model(tmp_path, capsys):
    out = tmp_path / "bundle"
    argv = ["--dataset", "breast_cancer", "--nodes", "4", "--rounds", "3", "--topology", "ring"]
    assert main(["simulate", *argv, "--export", str(out)]) == 0
    assert "wrote the bundle" in capsys.readouterr().err
    bundle = load_bundle(out)
    cfg = sim_config(None, {"dataset": "breast_cancer", "nodes": 4, "rounds": 3, "topology": "ring"})
    result = simulate(cfg)  # the same seeded run
    ds, _, _ = prepare(cfg)
    model = build_model(cfg.model, ds.input_shape, ds.n_classes, parse_hidden(cfg.hidden), cfg.seed)
    load_flat(model, result.main.final_params.mean(0))
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(ds.x_test)), 1).numpy()
    raw = graph.raw_of(ds.preprocessor, ds.x_test)
    np.testing.assert_allclose(bundle.predict_proba(raw), want, atol=1e-5)
    assert np.abs(graph.run_onnx((out / ONNX).read_bytes(), raw) - want).max() <= 1e-5
    card = bundle.card
    assert card["source"] == "simulate" and card["task"]["classes"] == ["0", "1"]
    assert card["simulation"]["nodes"] == 4 and len(card["training_rows"]) == 4
    key = "averaged_model_accuracy"
    assert card["sites"][0]["metrics"][key] == result.main.rows[-1][key]


def test_simulate_export_of_a_table_and_of_an_image_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "t.csv", HEADER, patients(120, seed=1))
    assert main(["simulate", "--dataset", "csv:t.csv", "--label-column", "outcome", "--nodes", "3",
                 "--rounds", "2", "--ignore", "patient_id", "--missing", "impute",
                 "--export", "tab"]) == 0
    card = json.loads((tmp_path / "tab" / "model.json").read_text())
    assert card["task"]["classes"] == ["no", "yes"]  # the table's labels, sorted
    assert card["features"]["ignore"] == ["patient_id"]
    pred = predict(load_bundle(tmp_path / "tab"), "t.csv")
    assert pred.probs.shape == (120, 2) and pred.y is not None

    assert main(["simulate", "--dataset", "digits", "--model", "cnn", "--nodes", "2", "--rounds", "1",
                 "--export", "img"]) == 0
    img = load_bundle(tmp_path / "img")
    assert img.input_shape == (1, 8, 8) and len(img.classes) == 10
    capsys.readouterr()
