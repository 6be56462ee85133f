"""One rule re-normalises the mixing weights over what arrived, per node (rounds) and for all
nodes (simulator faults)."""

import numpy as np
import pytest
import scipy.sparse as sp

from p2pfl.gossip.mixing import renormalisation, renormalised_row, renormalised_rows
from p2pfl.sim.faults import renormalised


def test_weights_sum_to_one_and_no_weight_at_all_keeps_the_own_model():
    assert renormalised_row([0.5, 0.25]) == pytest.approx((2 / 3, 1 / 3))
    assert renormalised_row([1 / 3, 1 / 3]) == pytest.approx((0.5, 0.5))
    assert renormalised_row([0.0, 0.2, 0.2]) == pytest.approx((0.0, 0.5, 0.5))  # no self weight
    assert renormalised_row([0.0, 0.0, 0.0]) == (1.0, 0.0, 0.0)
    assert renormalised_row([0.0]) == (1.0,)
    factor, keeps_own = renormalisation(np.array([2.0, 0.0, 0.5]))
    assert factor.tolist() == [0.5, 0.0, 2.0] and keeps_own.tolist() == [False, True, False]


def test_all_nodes_at_once_is_the_per_node_rule_on_every_row():
    rng = np.random.default_rng(3)
    n = 12
    dense = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
    dense[4] = 0.0  # heard nothing, no self weight
    dense[7, 7] = 0.0  # no self weight, heard some
    dense[7, 2] = 0.4
    out = renormalised_rows(sp.csr_matrix(dense)).toarray()
    for i in range(n):
        order = [i] + [j for j in range(n) if j != i]
        row = renormalised_row(list(dense[i, order]))
        assert out[i, order] == pytest.approx(row, abs=1e-15), i
    assert out[4].tolist() == [0.0] * 4 + [1.0] + [0.0] * 7
    assert out.sum(axis=1) == pytest.approx(np.ones(n))


def test_faults_keep_the_diagonal_and_what_arrived():
    w = sp.csr_matrix(np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]))
    arrived = sp.csr_matrix(([0.25], ([0], [1])), shape=(3, 3))  # only 1 -> 0 arrived
    m = renormalised(w, arrived).toarray()
    assert m == pytest.approx(np.array([[2 / 3, 1 / 3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
