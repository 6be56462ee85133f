"""The hypercube topology."""


import pytest

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topology import build_topology


def test_hypercube_needs_power_of_two():
    assert build_topology("hypercube", 8).degree_stats() == (3, 3.0, 3)
    with pytest.raises(GossipSettingError, match="power of two"):
        build_topology("hypercube", 12)
