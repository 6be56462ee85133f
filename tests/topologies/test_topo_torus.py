"""The torus topology."""


import pytest

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topology import build_topology


def test_torus_shape():
    topo = build_topology("torus", 12)
    assert topo.degree_stats() == (4, 4.0, 4)
    with pytest.raises(GossipSettingError, match="does not divide"):
        build_topology("torus", 12, ["rows=5"])
