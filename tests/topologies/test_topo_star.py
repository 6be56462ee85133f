"""The star topology."""


import pytest

from p2pfl.gossip.topology import build_topology


@pytest.mark.parametrize("n", [4, 10, 50])
def test_star_gap_closed_form(n):
    assert build_topology("star", n).spectral_gap() == pytest.approx(1 / n)
    assert build_topology("star", n).out_neighbors(0) == list(range(1, n))
