"""The exponential topology."""



from p2pfl.gossip.topology import build_topology


def test_exponential_neighbours_are_powers_of_two_apart():
    topo = build_topology("exponential", 16)
    assert topo.out_neighbors(0) == sorted({1, 2, 4, 8, 15, 14, 12})
    assert topo.degree_stats() == (7, 7.0, 7)
