"""Feature shift: an iid split and a per-node feature offset."""

import numpy as np
import pytest

from p2pfl.learning.partition import partition


def test_shift_gives_each_node_an_offset_of_scale_sigma():
    y = np.random.default_rng(0).integers(0, 10, 1000)
    p = partition("shift:1.0", y, 16, seed=3, n_features=5)
    assert p.feature_shift.shape == (16, 5) and p.feature_shift.dtype == np.float32
    wide = partition("shift:2.0", y, 200, seed=3, n_features=50).feature_shift
    assert wide.std() == pytest.approx(2.0, rel=0.05)
    # the rows are the iid split of the same seed
    iid = partition("iid", y, 16, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(p.indices, iid.indices, strict=True))
