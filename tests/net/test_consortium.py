"""Four real node processes on loopback: they train, gossip and agree with the simulator."""

import torch

from p2pfl.settings.sim import SimConfig
from p2pfl.sim.metrics import consensus_distance
from p2pfl.sim.runner import simulate


def test_four_nodes_ring_five_rounds_match_the_simulator(consortium):
    c = consortium(nodes=4, rounds=5)
    c.start()
    assert c.wait() == {name: 0 for name in c.names}
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == [0, 1, 2, 3, 4]
        assert all(not r["missing"] and len(r["heard_from"]) == 2 for r in rows)
        assert "event=done round=5" in c.log(name)
    params = torch.stack([c.params(name) for name in c.names])
    # the simulator's reference engine on the same setting: same split, batches and weights
    cfg = SimConfig(dataset="breast_cancer", model="mlp", hidden="32", nodes=4, topology="ring",
                    partition="dirichlet:0.5", rounds=5, local_steps=5, batch_size=16, lr=0.05,
                    engine="reference", baseline="local", eval_every=5)
    sim = simulate(cfg)
    decentralized, local = sim.runs
    predicted = decentralized.final["consensus_distance"]
    measured = consensus_distance(params)
    assert abs(measured - predicted) <= 1e-3 * predicted + 1e-9
    accuracy = sum(c.metrics(n)[-1]["val_accuracy"] for n in c.names) / 4
    assert abs(accuracy - decentralized.final["mean_local_accuracy"]) < 1e-6
    assert accuracy > local.final["mean_local_accuracy"]
