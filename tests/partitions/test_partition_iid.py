"""The iid partition."""

import numpy as np

from p2pfl.learning.partition import partition


def test_iid_deals_near_equal_shares_by_seed():
    y = np.arange(103) % 10
    p = partition("iid", y, 10, seed=3)
    assert sorted(p.sizes.tolist()) == [10] * 7 + [11] * 3 and p.feature_shift is None
    assert all(np.array_equal(i, np.sort(i)) for i in p.indices)
    other = partition("iid", y, 10, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(p.indices, other.indices, strict=True))
    again = partition("iid:", y, 10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(p.indices, again.indices, strict=True))
