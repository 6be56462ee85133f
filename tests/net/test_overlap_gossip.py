"""gossip.mode = "overlap" with real node processes: each node sends the model it starts a round
with while it trains (p2pfl.gossip.overlap); every round still hears every neighbour, and the
nodes learn. (That the send precedes the training, and that the models equal the simulator's,
is tested on the round machine: tests/protocol/test_protocol_matches_simulator.py.)"""


def test_overlap_nodes_hear_every_neighbour_and_learn(consortium):
    c = consortium(nodes=4, rounds=10, round_timeout=10.0, topology="ring")
    c.configure("gossip", 'mode = "overlap"')
    c.start()
    assert c.wait() == dict.fromkeys(c.names, 0)
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == list(range(10)), name
        assert all(len(r["heard_from"]) == 2 and not r["missing"] for r in rows), name
        assert all(r["wait_seconds"] is not None for r in rows), name  # from training's end to the mix
        assert rows[-1]["val_accuracy"] > 0.85, name
        log = c.log(name)
        assert "event=update_rejected" not in log and "event=send_failed" not in log, name


def test_overlap_refuses_choco(consortium):
    c = consortium(nodes=3, rounds=2, topology="ring")
    c.configure("gossip", 'mode = "overlap"\ncompression = "topk:fraction=0.1"')
    c.start("hospital-1")
    assert c.wait() == {"hospital-1": 2}
    assert 'needs gossip.mode = "sync"' in c.log("hospital-1")
