"""The regular topology."""


import pytest

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topology import build_topology


def test_regular_graph_has_degree_d_everywhere():
    assert build_topology("regular", 20, {"d": 3}, seed=2).degree_stats() == (3, 3.0, 3)
    with pytest.raises(GossipSettingError, match="regular"):
        build_topology("regular", 5, {"d": 3})  # n * d must be even
