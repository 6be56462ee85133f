"""The complete topology."""


import pytest

from p2pfl.gossip.topology import build_topology


@pytest.mark.parametrize("n", [4, 10, 50])
def test_complete_gap_closed_form(n):
    assert build_topology("complete", n).spectral_gap() == pytest.approx(1.0)
    assert build_topology("complete", n).degree_stats() == (n - 1, n - 1, n - 1)
