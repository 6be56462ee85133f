"""A 3-hospital consortium on its own tables trains, then each exports its model, predicts and
evaluates its rows: the bundle gives the daemon's own model's probabilities; ONNX equals torch;
every site's row is in every site's model card."""

from __future__ import annotations

import json

import numpy as np
import torch
from test_plan_consortium import own_tables, patients

from p2pfl.cli import main
from p2pfl.learning.models import build_model
from p2pfl.learning.preprocess import Statistics
from p2pfl.net.assembly import node_table
from p2pfl.product import graph
from p2pfl.product.bundle import ONNX, load_bundle
from p2pfl.product.predict import predict
from p2pfl.settings.load import node_settings


def test_each_hospital_exports_and_predicts_with_its_trained_model(consortium, tmp_path, capsys):
    c = consortium(sub="c", nodes=3, rounds=3, topology="ring", round_timeout=10.0)
    own_tables(c, patients(160))
    c.configure("training", 'select = "balanced_accuracy"')
    c.start()
    assert c.wait() == {name: 0 for name in c.names}
    cards = []
    for k, name in enumerate(c.names):
        out = tmp_path / f"{name}-bundle"
        assert main(["export", "--config", str(c.configs[name]), "--out", str(out)]) == 0
        bundle = load_bundle(out)
        cards.append(bundle.card)
        # the daemon's own model: its checkpoint, on its validation rows, preprocessed as agreed
        state = torch.load(c.folder / name / "state" / "checkpoint.pt", weights_only=True)
        settings = node_settings(c.configs[name])
        local = node_table(settings, k, 3)
        data = local.prepare(Statistics.from_dict(state["preprocessing"], local.table.columns))
        own = build_model("mlp", data.input_shape, 2, tuple(settings.model.hidden))
        own.load_state_dict(state["model"])
        with torch.no_grad():
            want = torch.softmax(own(data.x_val), dim=1).numpy()
        pred = predict(bundle, str(c.folder / name / "patients.csv"), id_column="patient_id")
        np.testing.assert_allclose(pred.probs[local.test], want, atol=1e-6)
        raw = local.table.x
        assert np.isnan(raw).any()  # the tables have empty cells
        onnx = graph.run_onnx((out / ONNX).read_bytes(), raw)
        assert np.abs(onnx - bundle.predict_proba(raw)).max() <= 1e-5
        assert bundle.card["round"] == 3
        assert [s["name"] for s in bundle.card["sites"]] == c.names  # every site's row
        assert all(s["status"] == "reported" for s in bundle.card["sites"])
        # evaluate: the figures of the bundle on this site's table, with intervals
        capsys.readouterr()
        table = str(c.folder / name / "patients.csv")
        assert main(["evaluate", str(out), table, "--json", "--resamples", "200",
                     "--plots", str(tmp_path / f"{name}-plots")]) == 0
        figures = json.loads(capsys.readouterr().out)
        auroc = figures["metrics"]["auroc"]
        assert auroc["low"] <= auroc["value"] <= auroc["high"] and figures["rows"] == len(local.table.y)
        assert (tmp_path / f"{name}-plots" / "roc.png").read_bytes()[:4] == b"\x89PNG"
        # the best round's model (the members' median balanced accuracy)
        best = tmp_path / f"{name}-best"
        assert main(["export", "--config", str(c.configs[name]), "--out", str(best), "--round", "best"]) == 0
        selected = json.loads((c.folder / name / "state" / "consortium_report.json").read_text())["selection"]
        assert load_bundle(best).card["round"] == selected["round"] + 1
    capsys.readouterr()
    assert cards[0]["consortium"] == cards[1]["consortium"] == cards[2]["consortium"]
    assert cards[0]["preprocessing"] == cards[1]["preprocessing"]  # agreed: the same at all
    assert cards[0]["exported_by"] == "hospital-1" and cards[1]["exported_by"] == "hospital-2"
