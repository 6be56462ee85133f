"""Partitions (the front door and what every member keeps) and batch plans; each partition's
own tests are in tests/partitions/, each data source's in tests/sources/."""

import numpy as np
import pytest

from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.partition import partition


def _covers(parts, n):
    rows = np.concatenate(parts.indices)
    return len(rows) == n and len(np.unique(rows)) == n


SPECS = ["iid", "dirichlet:0.1", "dirichlet:100", "quantity:0.5", "shift:1.0", "site"]


@pytest.mark.parametrize("spec", SPECS)
def test_partitions_cover_every_row_once_and_no_node_is_empty(spec):
    y = np.random.default_rng(0).integers(0, 10, 1000)
    site = np.arange(1000) % 40
    p = partition(spec, y, 16, seed=3, site=site, n_features=5)
    assert _covers(p, 1000) and p.sizes.min() >= 1
    assert np.array_equal(np.concatenate(p.indices),
                          np.concatenate(partition(spec, y, 16, seed=3, site=site, n_features=5).indices))


def test_bad_specs_and_sizes_are_one_learning_error():
    y = np.zeros(12, dtype=int)
    with pytest.raises(LearningSettingError, match="fewer than the 20 nodes"):
        partition("iid", y, 20)
    with pytest.raises(LearningSettingError, match="unknown partition"):
        partition("zipf:2", y, 2)
    with pytest.raises(LearningSettingError, match="unknown partition 'iid:3'"):
        partition("iid:3", y, 2)
    with pytest.raises(LearningSettingError, match="must be positive"):
        partition("dirichlet:-1", y, 2)
    with pytest.raises(LearningSettingError, match="must be a number"):
        partition("quantity", y, 2)
    with pytest.raises(LearningSettingError, match="at least 1"):
        partition("iid", y, 0)


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
