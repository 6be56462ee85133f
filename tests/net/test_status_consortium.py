"""`p2pfl status` against a running consortium of real nodes: every member's round, neighbour or
not (status lines relayed), within one round of the truth; then the state folder's view."""

import json
import time

from p2pfl import cli
from p2pfl.net import admin


def status_json(c, name: str, capsys) -> dict:
    capsys.readouterr()
    assert cli.main(["status", "--config", str(c.configs[name]), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def own_rounds(c) -> dict[str, int | None]:
    """Each node's own round, as its admin socket says (None: not running)."""
    answers = {n: admin.query(c.folder / n / "state") for n in c.names}
    return {n: a["round"] if a else None for n, a in answers.items()}


def test_status_shows_every_members_round_within_one_round_of_the_truth(consortium, capsys):
    c = consortium(nodes=4, rounds=30, round_timeout=5.0, topology="ring")  # 1 and 3 are not neighbours
    c.configure("training", "local_steps = 100")  # rounds long enough to look at
    c.configure("node", 'log_format = "json"', "hospital-2")
    c.start()
    c.wait_for(lambda: len(c.metrics("hospital-1")) >= 3, what="3 rounds")
    checked, relayed = 0, set()
    for _ in range(4):
        before = own_rounds(c)
        views = {n: status_json(c, n, capsys) for n in c.names}
        after = own_rounds(c)
        if None in before.values() or None in after.values():
            break
        for viewer, snap in views.items():
            assert snap["running"] and snap["rounds"] == 30
            for m in snap["members"]:
                assert before[m["name"]] - 1 <= m["round"] <= after[m["name"]], (viewer, m, before, after)
                if m["via"] == "status line":
                    relayed.add((viewer, m["name"]))
        checked += 1
        time.sleep(0.4)
    assert checked >= 2
    assert {("hospital-1", "hospital-3"), ("hospital-3", "hospital-1")} <= relayed  # not neighbours
    assert c.wait() == dict.fromkeys(c.names, 0)
    events = [json.loads(line)["event"] for line in c.log("hospital-2").splitlines()]
    assert "round_done" in events and events[-1] == "consortium_report"
    done = status_json(c, "hospital-1", capsys)
    assert (done["running"], done["state"], done["round"]) == (False, "done", 30)
    rows = c.metrics("hospital-1")
    assert done["validation"]["val_accuracy"] == rows[-1]["val_accuracy"]
    heard = {m["name"]: m["round"] for m in done["members"]}
    assert heard["hospital-2"] == heard["hospital-4"] == 29  # their last updates, from audit.jsonl
    capsys.readouterr()
    assert cli.main(["status", "--config", str(c.configs["hospital-1"])]) == 0
    screen = capsys.readouterr().out
    assert "round 30/30" in screen and "hospital-4" in screen and "not running" in screen
