"""Bootstrap intervals: each resample's figures are scikit-learn's on the resampled rows, the
interval holds the point estimate and narrows with more rows, undefined resamples are skipped,
the same seed gives the same intervals, and 1000 resamples of 10,000 rows are quick."""

import time
import warnings

import numpy as np
import pytest

from p2pfl.evaluation import bootstrap_intervals, clinical_metrics
from p2pfl.evaluation.bootstrap import resampled_metrics
from p2pfl.evaluation.metrics import scalar_metrics


def rows(n, n_classes=2, seed=0):
    """n rows from one fixed distribution: a noisy classifier, probabilities rounded so scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.2 * np.eye(n_classes)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.round(probs, 2)
    return y, probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_each_resamples_figures_equal_clinical_metrics_on_the_resampled_rows(n_classes):
    y, probs = rows(150, n_classes)
    idx = np.random.default_rng(5).integers(0, 150, (6, 150))
    weights = np.stack([np.bincount(i, minlength=150) for i in idx]).astype(float)
    got = resampled_metrics(y, probs, weights, threshold=0.4)
    for b, i in enumerate(idx):
        want = clinical_metrics(y[i], probs[i], threshold=0.4)
        for m in scalar_metrics(n_classes):
            assert got[m][b] == pytest.approx(want[m], abs=1e-12), m


@pytest.mark.parametrize("n_classes", [2, 3])
def test_intervals_are_percentiles_of_the_defined_resamples(n_classes):
    # 14 rows, class 1 twice: many resamples lack it, and those are skipped for AUROC and the like
    y, probs = rows(14, n_classes, seed=3)
    y[:] = 0
    y[[2, 9]] = 1
    if n_classes == 3:
        y[[4, 5, 11]] = 2
    idx = np.random.default_rng(7).integers(0, 14, (150, 14))  # the draws bootstrap_intervals makes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = bootstrap_intervals(y, probs, resamples=150, level=0.9, seed=7)
        per_resample = [clinical_metrics(y[i], probs[i]) for i in idx]
    assert set(got) == set(scalar_metrics(n_classes))
    for m in scalar_metrics(n_classes):
        values = np.array([r[m] for r in per_resample])
        defined = values[~np.isnan(values)]
        assert 0 < len(defined) <= 150
        assert got[m] == pytest.approx(tuple(np.percentile(defined, [5, 95])), abs=1e-12), m
    assert np.isnan([r["auroc"] for r in per_resample]).sum() > 8  # the skipping was exercised


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_interval_contains_the_estimate_and_narrows_with_more_rows(n_classes):
    small, large = rows(200, n_classes, seed=1), rows(5000, n_classes, seed=2)
    point_small, point_large = clinical_metrics(*small), clinical_metrics(*large)
    ci_small = bootstrap_intervals(*small, resamples=300)
    ci_large = bootstrap_intervals(*large, resamples=300)
    for m in scalar_metrics(n_classes):
        for point, (low, high) in ((point_small, ci_small[m]), (point_large, ci_large[m])):
            assert low <= point[m] <= high, m
        assert ci_large[m][1] - ci_large[m][0] < 0.5 * (ci_small[m][1] - ci_small[m][0]), m


def test_a_higher_level_gives_a_wider_interval():
    y, probs = rows(300)
    narrow, wide = bootstrap_intervals(y, probs, level=0.5), bootstrap_intervals(y, probs, level=0.99)
    assert all(wide[m][0] < narrow[m][0] and narrow[m][1] < wide[m][1] for m in narrow)


def test_seeded_the_same_intervals_twice_and_others_for_another_seed():
    y, probs = rows(300)
    assert bootstrap_intervals(y, probs, seed=4) == bootstrap_intervals(y, probs, seed=4)
    assert bootstrap_intervals(y, probs, seed=4) != bootstrap_intervals(y, probs, seed=5)


def test_a_single_class_gives_nan_intervals_where_undefined_without_warnings(capfd):
    y, probs = rows(40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = bootstrap_intervals(np.zeros(40, int), probs, resamples=100)
        empty = bootstrap_intervals(np.zeros(0, int), np.zeros((0, 2)))
    assert all(np.isnan(ci[m]).all() for m in ("auroc", "average_precision", "sensitivity"))
    assert not np.isnan(ci["specificity"]).any() and not np.isnan(ci["accuracy"]).any()
    assert all(np.isnan(v).all() for v in empty.values())
    assert capfd.readouterr() == ("", "")


def test_a_thousand_resamples_of_ten_thousand_rows_take_under_five_seconds():
    y, probs = rows(10_000)
    start = time.process_time()  # CPU time: other processes on the machine do not count
    bootstrap_intervals(y, probs, resamples=1000)
    assert time.process_time() - start < 5
