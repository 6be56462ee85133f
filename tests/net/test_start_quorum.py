"""The start quorum between real node processes: a node waits for its peers before round 0."""

from __future__ import annotations

import time

from p2pfl.errors import EXIT_NO_QUORUM


def _events(log: str, event: str) -> list[str]:
    return [line for line in log.splitlines() if f"event={event} " in line]


def test_a_node_started_early_waits_and_nobody_misses_a_round(consortium):
    c = consortium(nodes=3, rounds=3, round_timeout=4.0)
    c.start("hospital-1")
    c.wait_for(lambda: "event=waiting_for_peers" in c.log("hospital-1"), what="hospital-1 to wait")
    time.sleep(6.0)  # longer than round_timeout: without the quorum it would run rounds alone
    c.start("hospital-2", "hospital-3")
    assert c.wait() == {n: 0 for n in c.names}
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == [0, 1, 2], name
        assert all(r["missing"] == [] for r in rows), (name, rows)
    waiting = _events(c.log("hospital-1"), "waiting_for_peers")
    assert "have=0 need=2 waiting_for=hospital-2,hospital-3" in waiting[0]
    assert len(waiting) <= 4  # rate limited: one line every few seconds
    assert "event=start_quorum have=2 need=2" in c.log("hospital-1")


def test_peers_that_never_come_end_the_node_with_its_exit_code(consortium):
    c = consortium(nodes=3, rounds=3, round_timeout=2.0)
    c.configure("gossip", "start_timeout = 3.0")
    started = time.monotonic()
    c.start("hospital-1")
    assert c.wait() == {"hospital-1": EXIT_NO_QUORUM}
    assert time.monotonic() - started >= 3.0
    log = c.log("hospital-1")
    [line] = _events(log, "start_timeout")
    assert "waiting_for=hospital-2,hospital-3" in line and f"exit_code={EXIT_NO_QUORUM}" in line
    assert "event=round_done" not in log


def test_a_member_of_other_settings_is_named_at_both_ends_and_not_counted(consortium):
    c = consortium(nodes=3, rounds=3, round_timeout=2.0)
    c.configure("gossip", "min_peers = 1\nstart_timeout = 5.0")
    c.configure("training", "lr = 0.1", "hospital-3")
    c.start()
    assert c.wait() == {"hospital-1": 0, "hospital-2": 0, "hospital-3": EXIT_NO_QUORUM}
    odd = _events(c.log("hospital-3"), "consortium_mismatch")
    for name in ("hospital-1", "hospital-2"):
        assert any(f"peer={name} " in line and "training.lr: 0.1 here, 0.05 at the peer" in line
                   for line in odd), odd
        theirs = _events(c.log(name), "consortium_mismatch")
        assert theirs and all("peer=hospital-3 " in line and "training.lr: 0.05 here, 0.1 at the peer" in line
                              for line in theirs), theirs
        assert "event=start_quorum have=1 need=1" in c.log(name)
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == [0, 1, 2]
        assert all(r["missing"] == ["hospital-3"] for r in rows)
    assert "waiting_for=hospital-1,hospital-2" in _events(c.log("hospital-3"), "start_timeout")[0]


def test_a_node_resuming_from_a_checkpoint_does_not_wait(consortium):
    c = consortium(nodes=3, rounds=3, round_timeout=1.0)
    c.configure("gossip", "start_timeout = 3.0")
    assert c.kill_after("hospital-1", 1) >= 1
    c.stop_all()
    before = len(c.log("hospital-1"))
    c.start("hospital-1")  # alone: at round >= 1 it runs its rounds by deadline
    assert c.wait("hospital-1") == {"hospital-1": 0}
    resumed = c.log("hospital-1")[before:]
    assert "event=waiting_for_peers" not in resumed and "event=start_timeout" not in resumed
    assert [r["round"] for r in c.metrics("hospital-1")] == [0, 1, 2]
