"""Partitions and batch plans; each data source's own tests are in tests/sources/."""

import numpy as np
import pytest

from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.partition import partition


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
