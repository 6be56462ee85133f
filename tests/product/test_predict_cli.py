"""`p2pfl predict`: the CSV it writes, the table read like training reads it (renames, the
label column optional), and bad data as one line with exit 2."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from bundle_tables import HEADER, patients, write_csv

from p2pfl.cli import main
from p2pfl.learning.models import build_model
from p2pfl.learning.preprocess import Preprocessor, Statistics
from p2pfl.learning.schema import Column
from p2pfl.learning.sources._columns import to_table
from p2pfl.product.bundle import Bundle, load_bundle, make_card, write_bundle
from p2pfl.product.predict import Predictions, predict, write_predictions

COLUMNS = (Column("age", "numeric"), Column("bmi", "numeric"),
           Column("sex", "categorical", ("female", "male")),
           Column("smoker", "categorical", ("current", "former", "never")))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A bundle written directly (no node): an MLP on the patients table's plan."""
    folder = tmp_path_factory.mktemp("b")
    rows = patients(200, seed=5)
    table = to_table("t", "t", HEADER, list(enumerate(rows, 2)), "outcome", classes=["no", "yes"],
                     schema=dataclasses.replace(_schema(), missing="impute"))
    pre = Preprocessor(COLUMNS, Statistics.of(table.x, COLUMNS))
    model = build_model("mlp", (pre.n_features,), 2, (8,), seed=1)
    card = make_card("mlp", (8,), 1, (pre.n_features,), model, pre, "outcome", ["no", "yes"],
                     ("patient_id",), "impute")
    write_bundle(folder / "bundle", Bundle(card, model, pre), table.x)
    return folder


def _schema():
    from p2pfl.learning.schema import FeatureSchema

    return FeatureSchema(columns=COLUMNS, ignore=("patient_id",))


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["predict", *argv])
    return code, capsys.readouterr().err


def test_predict_writes_ids_a_probability_per_class_and_the_class(bundle_dir, tmp_path, capsys):
    rows = patients(30, seed=9)
    data = write_csv(tmp_path / "new.csv", HEADER, rows)
    out = tmp_path / "p.csv"
    code, _ = _run(capsys, str(bundle_dir / "bundle"), str(data), "--out", str(out),
                   "--id-column", "patient_id")
    assert code == 0
    got = list(csv.DictReader(out.open()))
    assert list(got[0]) == ["patient_id", "p_no", "p_yes", "predicted"]
    assert [g["patient_id"] for g in got] == [r[0] for r in rows]
    bundle = load_bundle(bundle_dir / "bundle")
    want = predict(bundle, f"csv:{data}").probs
    np.testing.assert_allclose([[float(g["p_no"]), float(g["p_yes"])] for g in got], want, atol=1e-6)
    assert [g["predicted"] for g in got] == [["no", "yes"][k] for k in want.argmax(axis=1)]


def test_without_the_label_column_and_with_renamed_columns(bundle_dir, tmp_path, capsys):
    rows = patients(25, seed=2)
    header = ["patient_id", "Age (years)", "bmi", "sex", "smoker", "outcome"]
    labelled = write_csv(tmp_path / "a.csv", header, rows)
    unlabelled = write_csv(tmp_path / "b.csv", header[:-1], [r[:-1] for r in rows])
    bundle = load_bundle(bundle_dir / "bundle")
    a = predict(bundle, str(labelled), {"Age (years)": "age"})
    b = predict(bundle, f"csv:{unlabelled}", {"Age (years)": "age"})
    assert b.y is None and a.y is not None and len(a.y) == 25
    assert np.array_equal(a.probs, b.probs) and b.ids == [str(k) for k in range(1, 26)]
    code, err = _run(capsys, str(bundle_dir / "bundle"), str(unlabelled), "--out", str(tmp_path / "o.csv"))
    assert code == 2 and "'age'" in err  # without the rename the plan's column is missing
    code, _ = _run(capsys, str(bundle_dir / "bundle"), str(unlabelled), "--out", str(tmp_path / "o.csv"),
                   "--rename", "Age (years)=age")
    assert code == 0


@pytest.mark.parametrize("change, named", [
    (lambda h, r: ([x for x in h if x != "bmi"], [[c for k, c in enumerate(x) if h[k] != "bmi"] for x in r]),
     "'bmi'"),
    (lambda h, r: ([*h, "ward"], [[*x, "3"] for x in r]), "'ward'"),
    (lambda h, r: (h, [[*x[:4], "occasional", x[5]] for x in r]), "'occasional'"),
    (lambda h, r: (h, [[*x[:5], "maybe"] for x in r]), "'maybe'"),
], ids=["missing column", "extra column", "category not in the plan", "class not in the plan"])
def test_bad_data_is_one_line_and_exit_2(bundle_dir, tmp_path, capsys, change, named):
    header, rows = change(HEADER, patients(12, seed=4))
    data = write_csv(tmp_path / "bad.csv", header, rows)
    code, err = _run(capsys, str(bundle_dir / "bundle"), f"csv:{data}", "--out", str(tmp_path / "o.csv"))
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_drop_row_keeps_each_rows_own_number(bundle_dir, tmp_path):
    card_path = bundle_dir / "bundle" / "model.json"
    bundle = load_bundle(bundle_dir / "bundle")
    bundle.card = {**bundle.card, "features": {**json.loads(card_path.read_text())["features"],
                                               "missing": "drop_row"}}
    rows = [r for r in patients(40, seed=8)]
    data = write_csv(tmp_path / "d.csv", HEADER, rows)
    pred = predict(bundle, str(data))
    full = [k + 1 for k, r in enumerate(rows) if all(r[i] for i in (1, 2, 3, 4))]
    assert len(full) < len(rows) and pred.ids == [str(k) for k in full]
    impute = predict(load_bundle(bundle_dir / "bundle"), str(data))
    # the same rows in a smaller batch: equal up to the float kernels' batch-size rounding
    np.testing.assert_allclose(pred.probs, impute.probs[np.array(full) - 1], rtol=1e-6, atol=1e-7)


def test_predictions_csv_round_trips(tmp_path):
    probs = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 1).numpy()
    pred = Predictions("row", ["1", "2", "3", "4"], probs, None, ["a", "b", "c"])
    write_predictions(pred, tmp_path / "p.csv")
    got = list(csv.reader((tmp_path / "p.csv").open()))
    assert got[0] == ["row", "p_a", "p_b", "p_c", "predicted"]
    np.testing.assert_allclose([[float(v) for v in g[1:4]] for g in got[1:]], probs, rtol=1e-6)
    assert [g[4] for g in got[1:]] == [["a", "b", "c"][k] for k in probs.argmax(1)]


def test_to_table_without_a_label_column():
    rows = list(enumerate([["1.5", "f"], ["", "m"]], 2))
    cols = (Column("a", "numeric"), Column("s", "categorical", ("f", "m")))
    from p2pfl.learning.schema import FeatureSchema

    t = to_table("t", "t", ["a", "s"], rows, None, schema=FeatureSchema(columns=cols, missing="impute"))
    assert t.y.tolist() == [-1, -1] and np.isnan(t.x[1, 0]) and t.x[:, 1].tolist() == [0.0, 1.0]


def test_a_bundle_whose_onnx_graph_differs_from_torch_is_not_written(bundle_dir, tmp_path, monkeypatch):
    from p2pfl.errors import UserError
    from p2pfl.product import graph

    bundle = load_bundle(bundle_dir / "bundle")
    real = graph.run_onnx
    monkeypatch.setattr(graph, "run_onnx", lambda model, x: real(model, x) + 1e-4)
    x = np.array([[50.0, 25.0, 0.0, 1.0], [np.nan, 30.0, 1.0, np.nan]])
    with pytest.raises(UserError, match="differs from torch"):
        write_bundle(tmp_path / "new", Bundle(bundle.card, bundle.model, bundle.preprocessor), x)
    assert not any(tmp_path.iterdir())


def test_predict_reports_progress_over_the_rows(bundle_dir, tmp_path):
    data = write_csv(tmp_path / "p.csv", HEADER, patients(50, seed=6))
    seen = []
    predict(load_bundle(bundle_dir / "bundle"), str(data), progress=lambda *p: seen.append(p))
    assert seen == [(50, 50)]


def test_evaluate_figures_are_scikit_learns_with_intervals_and_need_the_labels(bundle_dir, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    rows = patients(300, seed=11)
    data = write_csv(tmp_path / "held_out.csv", HEADER, rows)
    assert main(["evaluate", str(bundle_dir / "bundle"), str(data), "--json", "--resamples", "300"]) == 0
    figures = json.loads(capsys.readouterr().out)
    pred = predict(load_bundle(bundle_dir / "bundle"), str(data))
    auroc = figures["metrics"]["auroc"]
    assert auroc["value"] == pytest.approx(roc_auc_score(pred.y, pred.probs[:, 1]), abs=1e-12)
    assert auroc["low"] <= auroc["value"] <= auroc["high"]
    assert {"sensitivity", "specificity", "brier", "ece", "average_precision"} <= set(figures["metrics"])
    assert main(["evaluate", str(bundle_dir / "bundle"), str(data)]) == 0
    assert "AUROC" in capsys.readouterr().out  # the table
    unlabelled = write_csv(tmp_path / "unlabelled.csv", HEADER[:-1], [r[:-1] for r in rows])
    assert main(["evaluate", str(bundle_dir / "bundle"), str(unlabelled)]) == 2
    assert "no label column 'outcome'" in capsys.readouterr().err
