"""Robust aggregation and DP-SGD between real node processes."""

from __future__ import annotations

import sys
from pathlib import Path

ATTACKER = [sys.executable, str(Path(__file__).with_name("byzantine_node.py"))]
NODES, ROUNDS = 5, 8
HONEST = [f"hospital-{i}" for i in range(1, NODES)]


def _run(consortium, sub: str, aggregator: str, attacker: bool) -> float:
    """Final mean accuracy of the honest members of a 5-node complete graph."""
    c = consortium(sub, nodes=NODES, rounds=ROUNDS, topology="complete", partition="iid")
    c.configure("gossip", f'aggregator = "{aggregator}"')
    c.start(*HONEST)
    c.start(f"hospital-{NODES}", program=ATTACKER if attacker else None)
    assert c.wait() == {n: 0 for n in c.names}
    if attacker:
        assert "event=byzantine_send" in c.log(f"hospital-{NODES}")
    return sum(c.metrics(n)[-1]["val_accuracy"] for n in HONEST) / len(HONEST)


def test_sign_flip_member_against_trimmed_mean(consortium):
    baseline = _run(consortium, "clean", "trimmed_mean:b=1", attacker=False)
    robust = _run(consortium, "robust", "trimmed_mean:b=1", attacker=True)
    plain = _run(consortium, "plain", "mean", attacker=True)
    assert baseline > 0.9
    assert abs(robust - baseline) <= 0.03, (robust, baseline)
    assert plain < baseline - 0.05, (plain, baseline)  # the attack has teeth against a plain mean


def test_too_small_neighbourhood_for_the_trim_is_refused_at_start(consortium):
    c = consortium(nodes=4, rounds=2, topology="ring")
    c.configure("gossip", 'aggregator = "trimmed_mean:b=2"')
    c.start("hospital-1")
    assert c.wait() == {"hospital-1": 2}
    assert "needs at least 5 models per round" in c.log("hospital-1")


def test_dp_sgd_reports_epsilon_every_round(consortium):
    c = consortium(nodes=3, rounds=3)
    c.configure("privacy", "noise = 1.0\nclip = 1.0\ndelta = 1e-5")
    c.start()
    assert c.wait() == {n: 0 for n in c.names}
    eps = [r["epsilon"] for r in c.metrics("hospital-1")]
    assert len(eps) == 3 and 0 < eps[0] < eps[1] < eps[2]
    assert "epsilon=" in c.log("hospital-1")


def test_privacy_budget_refuses_to_start_when_the_plan_exceeds_it(consortium):
    c = consortium(nodes=3, rounds=50)
    c.configure("privacy", "noise = 0.5\nmax_epsilon = 1.0")
    c.start("hospital-1")
    assert c.wait() == {"hospital-1": 2}
    assert "privacy.max_epsilon" in c.log("hospital-1")


def test_compressed_gossip_between_processes(consortium):
    """float16, int8 and top-k (CHOCO) updates: every node finishes, learns, sends fewer bytes."""
    sent = {}
    for spec in ("none", "int8", "topk:fraction=0.1,gamma=0.2"):
        c = consortium(spec.split(":")[0], nodes=4, rounds=12, round_timeout=5.0)
        c.configure("gossip", f'compression = "{spec}"')
        c.start()
        assert c.wait() == {n: 0 for n in c.names}
        for name in c.names:
            assert "event=update_rejected" not in c.log(name)
            assert c.metrics(name)[-1]["val_accuracy"] > 0.85
        sent[spec] = sum(r["bytes_out"] for n in c.names for r in c.metrics(n))
    # 1,058 parameters: int8 sends about a quarter of the tensor bytes, top-k 10% a fifth
    # (plus the same signed header on every message)
    assert sent["int8"] < 0.5 * sent["none"]
    assert sent["topk:fraction=0.1,gamma=0.2"] < 0.5 * sent["none"]


def test_choco_needs_a_static_topology(consortium):
    c = consortium(nodes=4, rounds=2, topology="epidemic")
    c.configure("gossip", 'compression = "topk:fraction=0.1"')
    c.start("hospital-1")
    assert c.wait() == {"hospital-1": 2}
    assert "needs a static topology" in c.log("hospital-1")
