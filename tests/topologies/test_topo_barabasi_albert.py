"""The barabasi_albert topology."""



from p2pfl.gossip.topology import build_topology


def test_barabasi_albert_grows_hubs_with_m_links_per_node():
    topo = build_topology("barabasi_albert", 200, {"m": 2}, seed=1)
    lo, _, hi = topo.degree_stats()
    assert lo >= 2 and hi > 10  # every node brought 2 links; early nodes became hubs
    assert topo.graph.number_of_edges() == 2 * (200 - 2)
