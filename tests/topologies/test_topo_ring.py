"""The ring topology."""

import math

import pytest

from p2pfl.gossip.topology import build_topology


@pytest.mark.parametrize("n", [5, 10, 33])
def test_ring_gap_closed_form(n):
    expected = (2 / 3) * (1 - math.cos(2 * math.pi / n))
    assert build_topology("ring", n).spectral_gap() == pytest.approx(expected)
