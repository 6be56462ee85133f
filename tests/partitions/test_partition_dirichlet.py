"""Dirichlet label skew (Hsu, Qi and Brown 2019)."""

import numpy as np

from p2pfl.learning.partition import partition


def test_dirichlet_skews_labels():
    y = np.repeat(np.arange(10), 100)
    skewed = partition("dirichlet:0.1", y, 10, seed=0)
    even = partition("dirichlet:1000", y, 10, seed=0)

    def dominant_share(p):
        return np.mean([np.bincount(y[i]).max() / len(i) for i in p.indices])

    assert dominant_share(skewed) > 0.5 > 0.2 > dominant_share(even)


def test_no_node_is_left_empty_at_extreme_skew():
    y = np.repeat(np.arange(2), 20)
    p = partition("dirichlet:0.01", y, 16, seed=0)
    assert p.sizes.min() >= 1 and p.sizes.sum() == 40
