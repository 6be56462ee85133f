"""The erdos_renyi topology."""

import math

import pytest

from p2pfl.gossip.topology import build_topology


def test_disconnected_graph_has_zero_gap():
    topo = build_topology("erdos_renyi", 30, {"p": 0.0})
    assert not topo.is_connected()
    assert topo.spectral_gap() == pytest.approx(0.0, abs=1e-9)


def test_erdos_renyi_default_p_is_recorded():
    topo = build_topology("erdos_renyi", 50, seed=1)
    assert topo.params["p"] == pytest.approx(2 * math.log(50) / 50)
    assert topo.is_connected()
