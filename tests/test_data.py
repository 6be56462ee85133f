import numpy as np
import pytest

from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.partition import partition


def test_bundled_datasets_split_stratified_and_standardised_on_train_only():
    ds = load_dataset("digits", seed=0)
    assert ds.n_classes == 10 and ds.n_features == 64
    assert len(ds.y_train) + len(ds.y_test) == 1797
    train_frac = np.bincount(ds.y_train) / len(ds.y_train)
    test_frac = np.bincount(ds.y_test) / len(ds.y_test)
    assert np.abs(train_frac - test_frac).max() < 0.01
    assert np.abs(ds.x_train.mean(axis=0)).max() < 1e-4
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3  # test data is not re-centred
    bc = load_dataset("breast_cancer")
    assert bc.n_classes == 2 and bc.n_features == 30 and bc.x_train.dtype == np.float32


def test_synthetic_is_seeded_and_has_sites():
    a = load_dataset("synthetic:sites=5,samples=20,features=4,classes=3", seed=1)
    b = load_dataset("synthetic:sites=5,samples=20,features=4,classes=3", seed=1)
    assert np.array_equal(a.x_train, b.x_train)
    assert a.n_features == 4 and a.n_classes == 3
    assert set(a.site_train.tolist()) == set(range(5))
    assert load_dataset("synthetic", nodes=7).site_train.max() == 6
    with pytest.raises(LearningSettingError, match="not one of"):
        load_dataset("synthetic:color=3")


def _csv(tmp_path, text):
    path = tmp_path / "h.csv"
    path.write_text(text)
    return f"csv:{path}"


def test_csv_with_site_column(tmp_path):
    rows = "".join(f"{i % 3},{i * 0.5},{'yes' if i % 2 else 'no'},H{i % 4}\n" for i in range(40))
    ds = load_dataset(_csv(tmp_path, "a,b,outcome,hospital\n" + rows), label_column="outcome",
                      site_column="hospital")
    assert ds.feature_names == ["a", "b"] and ds.n_classes == 2
    assert set(ds.site_train.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("text,match", [
    ("a,b\n1,2\n3,4\n", "no label column 'label'"),
    ("a,label\n1,0\nnan,1\n", r"h.csv:3: column 'a' is 'nan', not a finite number"),
    ("a,label\n1,0\nhigh,1\n", r"h.csv:3: column 'a' is not a number: 'high'"),
    ("a,label\n1,0\n2\n", "1 fields, the header has 2"),
    ("a,label\n", "no data rows"),
    ("a,label\n1,0\n2,0\n", "single class"),
])
def test_csv_errors_name_file_row_column(tmp_path, text, match):
    with pytest.raises(LearningSettingError, match=match):
        load_dataset(_csv(tmp_path, text))


def test_unknown_dataset():
    with pytest.raises(LearningSettingError, match="unknown dataset"):
        load_dataset("mnist")


def _covers(parts, n):
    rows = np.concatenate(parts.indices)
    return len(rows) == n and len(np.unique(rows)) == n


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.1", "dirichlet:100", "quantity:0.5", "shift:1.0"])
def test_partitions_cover_every_row_once_and_no_node_is_empty(spec):
    y = np.random.default_rng(0).integers(0, 10, 1000)
    p = partition(spec, y, 16, seed=3, n_features=5)
    assert _covers(p, 1000) and p.sizes.min() >= 1
    if spec.startswith("shift"):
        assert p.feature_shift.shape == (16, 5)


def test_dirichlet_skews_labels_and_quantity_skews_sizes():
    y = np.repeat(np.arange(10), 100)
    skewed = partition("dirichlet:0.1", y, 10, seed=0)
    even = partition("dirichlet:1000", y, 10, seed=0)

    def dominant_share(p):
        return np.mean([np.bincount(y[i]).max() / len(i) for i in p.indices])

    assert dominant_share(skewed) > 0.5 > 0.2 > dominant_share(even)
    sizes = partition("quantity:0.2", y, 10, seed=0).sizes
    assert sizes.max() > 3 * sizes.min()


def test_site_partition_and_errors():
    y = np.zeros(12, dtype=int)
    site = np.repeat(np.arange(6), 2)
    p = partition("site", y, 3, site=site)
    assert [sorted(set(site[i])) for i in p.indices] == [[0, 3], [1, 4], [2, 5]]
    with pytest.raises(LearningSettingError, match="fewer than the 7 nodes"):
        partition("site", y, 7, site=site)
    with pytest.raises(LearningSettingError, match="needs a dataset with a site column"):
        partition("site", y, 3)
    with pytest.raises(LearningSettingError, match="fewer than the 20 nodes"):
        partition("iid", y, 20)
    with pytest.raises(LearningSettingError, match="unknown partition"):
        partition("zipf:2", y, 2)
    with pytest.raises(LearningSettingError, match="must be positive"):
        partition("dirichlet:-1", y, 2)


def test_batch_plan_steps_and_epochs():
    sizes = np.array([5, 40, 1])
    steps = BatchPlan(sizes, 8, local_steps=3, seed=1).round(0)
    assert len(steps) == 3
    for s in steps:
        assert s.index.shape == (3, 8) and s.valid is None
        assert (s.index < sizes[:, None]).all() and (s.index >= 0).all()
    assert np.array_equal(BatchPlan(sizes, 8, 3, seed=1).round(4)[0].index,
                          BatchPlan(sizes, 8, 3, seed=1).round(4)[0].index)
    plan = BatchPlan(sizes, 8, local_epochs=2, seed=1)
    steps = plan.round(0)
    assert len(steps) == plan.steps_per_round() == 10
    for k, n in enumerate(sizes):
        seen = np.concatenate([s.index[k][s.valid[k]] for s in steps])
        assert np.array_equal(np.sort(seen), np.sort(np.tile(np.arange(n), 2)))
    assert [bool(s.active()[2]) for s in steps[:5]] == [True, False, False, False, False]


def test_csv_with_fixed_classes_keeps_label_order_and_class_count(tmp_path):
    rows = "".join(f"{i},{'no' if i % 2 else 'maybe'}\n" for i in range(20))
    ds = load_dataset(_csv(tmp_path, "a,label\n" + rows), classes=["yes", "no", "maybe"])
    assert ds.n_classes == 3 and set(ds.y_train.tolist()) == {1, 2}
    with pytest.raises(LearningSettingError, match="'maybe' in column 'label' are not among the classes"):
        load_dataset(_csv(tmp_path, "a,label\n" + rows), classes=["yes", "no"])
