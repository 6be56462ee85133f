"""gossip.mode = "async" with real node processes: nobody waits for a stopped member, and every
node still finishes every round having mixed its neighbours' models."""

import signal
import time

ROUNDS = 60  # enough that the others still have 5 rounds to go when hospital-3 is frozen


def test_async_nodes_go_on_while_a_member_is_stopped(consortium):
    c = consortium(nodes=4, rounds=ROUNDS, round_timeout=30.0, topology="ring")
    c.configure("gossip", f'mode = "async"\nmax_staleness = {ROUNDS + 10}')
    c.configure("training", "local_steps = 20")
    c.start()
    # every node past its start quorum (which waits for hospital-3) and a model of hospital-3
    # at hospital-2 (under load its first send can lag its rounds), then freeze it
    c.wait_for(lambda: all(len(c.metrics(n)) >= 3 for n in c.names), what="three rounds everywhere")
    c.wait_for(lambda: any("hospital-3" in r["heard_from"] for r in c.metrics("hospital-2")),
               what="hospital-2 to hold a model of hospital-3")
    c.signal("hospital-3", signal.SIGSTOP)  # frozen: in sync its neighbours would wait 30 s a round
    try:
        before = {n: len(c.metrics(n)) for n in ("hospital-1", "hospital-2", "hospital-4")}
        c.wait_for(lambda: all(len(c.metrics(n)) >= before[n] + 5 for n in before), timeout=25,
                   what="the others to go on")
        frozen_at = len(c.metrics("hospital-3"))
        time.sleep(0.2)
        assert len(c.metrics("hospital-3")) == frozen_at
    finally:
        c.signal("hospital-3", signal.SIGCONT)
    assert c.wait() == dict.fromkeys(c.names, 0)
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == list(range(ROUNDS)), name
        assert sum(bool(r["heard_from"]) for r in rows) >= 0.75 * ROUNDS, name  # it mixed others' models
        assert rows[-1]["val_accuracy"] > 0.85, name
    # hospital-3's neighbours kept mixing its last model while it was frozen (within the bound)
    assert all("hospital-3" in r["heard_from"] for r in c.metrics("hospital-2")[before["hospital-2"]:][:5])
