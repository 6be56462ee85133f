"""The watts_strogatz topology."""



from p2pfl.gossip.topology import build_topology


def test_watts_strogatz_is_a_lattice_without_rewiring():
    lattice = build_topology("watts_strogatz", 20, {"k": 4, "p": 0.0}, seed=1)
    assert lattice.out_neighbors(0) == [1, 2, 18, 19]
    rewired = build_topology("watts_strogatz", 20, {"k": 4, "p": 0.5}, seed=1)
    assert rewired.graph.number_of_edges() == 40 and rewired.out_neighbors(0) != [1, 2, 18, 19]
