"""The file topology."""

import math

import pytest

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topology import build_topology


def test_file_topologies(tmp_path):
    edges = tmp_path / "g.edgelist"
    edges.write_text("# a triangle plus a tail\na b\nb c\nc a\nc d\n")
    topo = build_topology(f"file:{edges}", 4)
    assert topo.degree_stats() == (1, 2.0, 3)
    import networkx as nx

    gml = tmp_path / "g.graphml"
    nx.write_graphml(nx.cycle_graph(6), gml)
    assert build_topology(f"file:{gml}", 6).spectral_gap() == pytest.approx(
        (2 / 3) * (1 - math.cos(2 * math.pi / 6)))
    with pytest.raises(GossipSettingError, match="has 4 nodes"):
        build_topology(f"file:{edges}", 5)
    with pytest.raises(GossipSettingError, match="does not exist"):
        build_topology(f"file:{tmp_path / 'nope'}", 5)
