"""Quantity skew: Dirichlet node sizes."""

import numpy as np

from p2pfl.learning.partition import partition


def test_quantity_skews_sizes_but_not_labels():
    y = np.repeat(np.arange(10), 100)
    sizes = partition("quantity:0.2", y, 10, seed=0).sizes
    assert sizes.max() > 3 * sizes.min()
    big = partition("quantity:0.2", y, 10, seed=0).indices[int(np.argmax(sizes))]
    assert len(np.unique(y[big])) == 10  # rows are iid: every class on the largest node
    even = partition("quantity:1000", y, 10, seed=0).sizes
    assert even.max() < 1.3 * even.min()
