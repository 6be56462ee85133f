"""Clinical metrics: every figure equals scikit-learn's on a fixed input, ECE by hand, undefined
figures are NaN without exceptions or printed warnings, and the table and JSON forms."""

import json
import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    recall_score,
    roc_auc_score,
)

from p2pfl.evaluation import as_json, clinical_metrics, format_table, training_metrics, warnings_for
from p2pfl.evaluation.metrics import predicted_classes, scalar_metrics


def binary_rows(n=300, seed=1):
    """Labels and probabilities that separate the classes imperfectly, rounded so scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), 2)
    return y, np.c_[1 - p1, p1]


def three_class_rows(n=300, seed=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_figures_equal_scikit_learns(threshold):
    y, probs = binary_rows()
    m = clinical_metrics(y, probs, threshold=threshold)
    pred = (probs[:, 1] >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, probs[:, 1]), abs=1e-12)
    assert m["average_precision"] == pytest.approx(average_precision_score(y, probs[:, 1]), abs=1e-12)
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred, pos_label=1), abs=1e-12)
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, probs[:, 1]), abs=1e-12)
    assert m["confusion"] == confusion_matrix(y, pred).tolist()
    assert m["rows"] == 300 and m["class_counts"] == np.bincount(y).tolist()
    assert m["threshold"] == threshold
    assert 0.5 < m["auroc"] < 0.99 and 0 < m["ece"] < 1


def test_the_threshold_moves_sensitivity_and_specificity():
    y, probs = binary_rows()
    low, high = clinical_metrics(y, probs, threshold=0.2), clinical_metrics(y, probs, threshold=0.8)
    assert low["sensitivity"] > high["sensitivity"] and low["specificity"] < high["specificity"]
    assert low["auroc"] == high["auroc"]


def test_three_class_figures_equal_scikit_learns():
    y, probs = three_class_rows()
    m = clinical_metrics(y, probs)
    pred = probs.argmax(axis=1)
    onehot = np.eye(3)[y]
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12)
    assert m["average_precision"] == pytest.approx(average_precision_score(onehot, probs, average="macro"),
                                                   abs=1e-12)
    assert m["brier"] == pytest.approx(np.mean(((probs - onehot) ** 2).sum(axis=1)), abs=1e-12)
    assert m["confusion"] == confusion_matrix(y, pred).tolist()
    assert "sensitivity" not in m and "specificity" not in m and "threshold" not in m
    assert set(scalar_metrics(3)) <= set(m)


def test_ece_by_hand():
    # top-class probability, right?: 0.9 yes, 0.85 yes (bin (0.8, 0.9]); 0.8 no (bin (0.7, 0.8]);
    # 0.7 yes (class 0, bin (0.6, 0.7]); 0.55 yes (bin (0.5, 0.6])
    p1 = np.array([0.9, 0.85, 0.8, 0.3, 0.55])
    y = np.array([1, 1, 0, 0, 1])
    expected = (2 * abs(1 - 0.875) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55)) / 5
    assert clinical_metrics(y, np.c_[1 - p1, p1])["ece"] == pytest.approx(expected, abs=1e-12)
    assert clinical_metrics(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))["ece"] == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_a_single_class_gives_nan_auroc_without_raising_or_warnings(label, capfd):
    y, probs = binary_rows(n=20)
    y = np.full(20, label)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = clinical_metrics(y, probs)
        t = training_metrics(y, probs)
    assert np.isnan(m["auroc"]) and np.isnan(t["auroc"])
    assert np.isnan(m["specificity" if label == 1 else "sensitivity"])
    assert not np.isnan(m["sensitivity" if label == 1 else "specificity"])
    assert np.isnan(m["average_precision"]) == (label == 0)
    assert m["accuracy"] == m["balanced_accuracy"] == t["accuracy"]
    assert capfd.readouterr() == ("", "")


def test_a_missing_class_of_three_gives_nan_auroc():
    y, probs = three_class_rows()
    keep = y != 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = clinical_metrics(y[keep], probs[keep])
    assert np.isnan(m["auroc"]) and np.isnan(m["average_precision"])
    assert m["class_counts"][2] == 0 and not np.isnan(m["brier"])


def test_no_rows_gives_nan_figures():
    m = clinical_metrics(np.zeros(0, int), np.zeros((0, 2)))
    assert all(np.isnan(m[k]) for k in scalar_metrics(2)) and m["rows"] == 0
    assert m["confusion"] == [[0, 0], [0, 0]]
    assert all(np.isnan(v) for v in training_metrics(np.zeros(0, int), np.zeros((0, 2))).values())


def test_training_metrics_are_the_clinical_subset():
    for y, probs in (binary_rows(), three_class_rows()):
        full, cheap = clinical_metrics(y, probs), training_metrics(y, probs)
        assert cheap == {k: full[k] for k in ("accuracy", "balanced_accuracy")} | {"auroc": cheap["auroc"]}
        assert cheap["auroc"] == pytest.approx(full["auroc"], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_training_metrics_in_numpy_match_scikit_learn(classes):
    rng = np.random.default_rng(classes)
    for rows in (7, 60, 500):
        y = rng.integers(0, classes, rows)
        y[:classes] = np.arange(classes)  # every class present
        logits = np.round(rng.normal(size=(rows, classes)), 1)  # rounded: tied scores
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        full, cheap = clinical_metrics(y, probs), training_metrics(y, probs)
        assert cheap["accuracy"] == full["accuracy"]
        assert cheap["balanced_accuracy"] == full["balanced_accuracy"]
        assert cheap["auroc"] == pytest.approx(full["auroc"], rel=1e-12)
        only_predicted = np.where(y == classes - 1, 0, y)  # the last class predicted, never true
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = balanced_accuracy_score(only_predicted, predicted_classes(probs))
        assert training_metrics(only_predicted, probs)["balanced_accuracy"] == expected


def test_inputs_that_do_not_fit_are_a_programming_error():
    with pytest.raises(ValueError, match="probs must be"):
        clinical_metrics(np.zeros(3, int), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="labels must be 0..1"):
        clinical_metrics(np.array([0, 2]), np.full((2, 2), 0.5))


def test_warnings_for_a_single_class_few_rows_and_a_missing_class():
    assert warnings_for(np.ones(10, int), 2) == [
        "validation split has a single class (all 10 rows are class 1): its AUROC, sensitivity and "
        "specificity are undefined",
        "validation split has only 10 rows (fewer than 30): its metrics are noisy"]
    assert warnings_for(np.array([0, 1] * 20), 2) == []
    assert warnings_for(np.array([0, 1] * 20), 3) == [
        "validation split has no rows of class 2: its AUROC is undefined"]
    assert warnings_for(np.zeros(0, int), 2) == ["validation split is empty: it has no metrics"]


def test_the_table_has_one_figure_per_line_with_its_interval():
    y, probs = binary_rows()
    m = clinical_metrics(y, probs)
    intervals = {k: (m[k] - 0.01, m[k] + 0.02) for k in scalar_metrics(2)}
    table = format_table(m, intervals, classes=["healthy", "sick"])
    line = next(s for s in table.splitlines() if s.startswith("AUROC"))
    a = m["auroc"]
    assert re.fullmatch(rf"AUROC +{a:.3f} +\({a - 0.01:.3f} - {a + 0.02:.3f}\)", line)
    assert "Sensitivity (threshold 0.5)" in table and "95% bootstrap interval" in table
    assert re.search(rf"healthy +{m['confusion'][0][0]} +{m['confusion'][0][1]}$", table, re.M)
    bare = format_table(clinical_metrics(np.ones(20, int), probs[:20]))
    assert re.search(r"^AUROC +undefined$", bare, re.M) and "interval" not in bare


def test_json_has_null_for_undefined_figures_and_the_intervals():
    y, probs = binary_rows(n=20)
    m = clinical_metrics(np.ones(20, int), probs)
    out = as_json(m, {"accuracy": (0.4, 0.6), "auroc": (np.nan, np.nan)})
    text = json.dumps(out, allow_nan=False)
    back = json.loads(text)
    assert back["metrics"]["auroc"] == {"value": None, "low": None, "high": None}
    assert back["metrics"]["accuracy"] == {"value": m["accuracy"], "low": 0.4, "high": 0.6}
    assert back["rows"] == 20 and back["threshold"] == 0.5 and back["level"] == 0.95
    assert back["confusion"] == m["confusion"]
