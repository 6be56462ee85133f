"""`p2pfl node --check` against real node processes on 127.0.0.1: a ring of five hospitals of
which hospital-2 and hospital-5 run (waiting for their start quorum), the others not. Each
set-up is checked once (`checked`), in this process, with 2-second dials."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os

import pytest
from consortium import Consortium
from test_plan_consortium import own_tables, patients

from p2pfl.cli import main
from p2pfl.commands import key_peer_id, keygen
from p2pfl.files.roster_file import load_roster, write_roster
from p2pfl.protocol.roster import Roster
from p2pfl.settings.toml_out import dumps_document
from p2pfl.tomlio import read_toml

TIMEOUT = "2"


def check(config, *flags: str) -> tuple[int, str]:
    """`p2pfl node --check` of `config`: its exit code and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["node", "--check", "--config", str(config), "--timeout", TIMEOUT, *flags])
    return code, out.getvalue()


def lines_of(out: str, name: str) -> list[str]:
    """The checklist lines of item `name`, each with its fix line (if any) after a newline."""
    lines = out.splitlines()
    fixed = [(ln, nxt if nxt.startswith("       fix:") else "")
             for ln, nxt in zip(lines, [*lines[1:], ""], strict=True)]
    return ["\n".join(filter(None, pair)) for pair in fixed if _name(pair[0]) == name]


def _name(line: str) -> str:
    """The item a checklist line is about ("[FAIL] network hospital-2: ..." -> "network hospital-2")."""
    return line.split(":")[0].split(None, 1)[-1]


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    """Five hospitals (iid: every class everywhere), hospital-2 and hospital-5 running; hospital-3's
    plan has another training.lr; hospital-1 also has a roster copy with a wrong peer ID for
    hospital-2 (node-wrong-id.toml)."""
    c = Consortium(tmp_path_factory.mktemp("ring"), nodes=5, rounds=2, round_timeout=5.0, partition="iid")
    c.configure("gossip", "min_peers = 1")  # one counted hello would start a running node
    c.configure("training", "lr = 0.1", "hospital-3")
    other = keygen(c.folder / "other.key", None)
    wrong = Roster([dataclasses.replace(m, peer_id=other) if m.name == "hospital-2" else m
                    for m in c.roster.members])
    write_roster(c.folder / "hospital-1" / "roster-wrong-id.toml", wrong)
    raw = read_toml(c.configs["hospital-1"])
    raw["node"]["roster"] = "roster-wrong-id.toml"  # type: ignore[index]
    (c.folder / "hospital-1" / "node-wrong-id.toml").write_text(dumps_document(raw))
    try:
        c.start("hospital-2", "hospital-5")
        for name in ("hospital-2", "hospital-5"):
            c.wait_for(lambda n=name: "event=waiting_for_peers" in c.log(n), what=f"{name} to listen")
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def checked(ring):
    """checked(config file name relative to the ring's folder) -> (exit code, output), run once."""
    runs: dict[str, tuple[int, str]] = {}

    def run(path: str, *flags: str) -> tuple[int, str]:
        key = " ".join([path, *flags])
        if key not in runs:
            runs[key] = check(ring.folder / path, *flags)
        return runs[key]
    return run


def test_all_well_is_all_ok_and_exit_0_and_leaves_no_trace(ring, checked):
    code, out = checked("hospital-1/node.toml")
    assert code == 0, out
    items = out.splitlines()[:-1]
    assert all(ln.startswith("[ok]") for ln in items), out
    names = [_name(ln) for ln in items]
    assert names == ["config", "key", "roster", "topology", "aggregator", "data", "model", "privacy",
                     "network hospital-2", "network hospital-5"]
    [h2] = lines_of(out, "network hospital-2")
    assert "same consortium" in h2 and "hello round trip" in h2
    assert out.splitlines()[-1] == "all checks passed: ready to start"
    assert not (ring.folder / "hospital-1" / "state").exists()  # nothing written
    for name in ("hospital-2", "hospital-5"):  # a hello answered is not a start: still waiting
        assert "event=start_quorum" not in ring.log(name) and ring.procs[name].poll() is None


def test_json_is_one_object_with_every_check(checked):
    code, out = checked("hospital-1/node.toml", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert {c["status"] for c in report["checks"]} == {"ok"}
    assert [set(c) for c in report["checks"]] == [{"name", "status", "detail", "fix"}] * 10
    code, out = checked("hospital-3/node.toml", "--json")
    report = json.loads(out)
    assert code == 2 and report["ok"] is False
    failed = {c["name"]: c for c in report["checks"] if c["status"] == "fail"}
    assert set(failed) == {"network hospital-2", "network hospital-4"}
    assert all(c["fix"] for c in failed.values())


def test_a_wrong_peer_id_in_the_roster_names_both_and_the_fix(ring, checked):
    code, out = checked("hospital-1/node-wrong-id.toml")
    assert code == 2
    real = ring.roster.by_name("hospital-2").peer_id
    wrong = load_roster(ring.folder / "hospital-1" / "roster-wrong-id.toml").by_name("hospital-2").peer_id
    [line] = lines_of(out, "network hospital-2")
    assert line.startswith("[FAIL]") and "wrong peer ID" in line
    assert real in line and wrong in line
    assert "fix: fix the peer_id of hospital-2 in roster.toml" in line


def test_an_unreachable_neighbour_is_named_with_its_address(ring, checked):
    code, out = checked("hospital-3/node.toml")
    assert code == 2
    [line] = lines_of(out, "network hospital-4")
    address = ring.roster.by_name("hospital-4").addresses[0]
    assert line.startswith("[FAIL]") and f"unreachable at {address}: connection refused" in line
    assert "fix: is hospital-4's node running there" in line and "firewall" in line


def test_a_plan_mismatch_names_the_key_with_both_values(ring, checked):
    code, out = checked("hospital-3/node.toml")
    assert code == 2
    [line] = lines_of(out, "network hospital-2")
    assert line.startswith("[FAIL]") and "plan/roster mismatch" in line
    assert "training.lr: 0.1 here, 0.05 at the peer" in line
    assert "fix: agree with hospital-2 on one plan.toml and one roster.toml" in line
    assert out.splitlines()[-1].startswith("2 check(s) failed")


def test_a_running_node_is_checked_without_dialling_its_neighbours(ring, checked):
    code, out = checked("hospital-2/node.toml")
    assert code == 0, out
    [line] = lines_of(out, "network")
    assert line.startswith("[skip]") and f"(pid {ring.procs['hospital-2'].pid})" in line
    assert "p2pfl status" in line and out.splitlines()[-1] == "no check failed; 1 skipped"


# -- items that fail before the network: no node runs ------------------------------------------

@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Three hospitals on their own tables: hospital-1's config is bad, hospital-2's key is not
    the roster's, hospital-3's table lacks the column bmi and its key has mode 0400."""
    c = Consortium(tmp_path_factory.mktemp("broken"), nodes=3, rounds=2, round_timeout=5.0)
    own_tables(c, patients(120))
    c.configure("training", 'rounds = "many"', "hospital-1")
    (c.folder / "hospital-2" / "node.key").unlink()
    keygen(c.folder / "hospital-2" / "node.key", None)
    table = c.folder / "hospital-3" / "patients.csv"
    rows = [ln.split(",") for ln in table.read_text().splitlines()]
    table.write_text("\n".join(",".join(r[:2] + r[3:]) for r in rows) + "\n")  # bmi is column 2
    os.chmod(c.folder / "hospital-3" / "node.key", 0o400)
    return c


def test_json_and_timeout_go_with_check(broken, capsys):
    config = str(broken.configs["hospital-3"])
    assert main(["node", "--config", config, "--json"]) == 2
    assert "--json and --timeout go with --check" in capsys.readouterr().err
    assert main(["node", "--check", "--config", config, "--timeout", "0"]) == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err


def _statuses(out: str) -> dict[str, str]:
    return {_name(ln): ln.split()[0] for ln in out.splitlines() if ln.startswith("[")}


def test_a_bad_config_fails_its_item_and_skips_the_rest(broken):
    code, out = check(broken.configs["hospital-1"])
    assert code == 2
    [line] = lines_of(out, "config")
    assert line.startswith("[FAIL]") and "training.rounds must be an integer" in line
    assert "\n       fix:" in line
    statuses = _statuses(out)
    assert statuses.pop("config") == "[FAIL]" and set(statuses.values()) == {"[skip]"}
    assert "needs config, which did not pass" in lines_of(out, "key")[0]


def test_a_key_not_in_the_roster_says_both_peer_ids(broken):
    code, out = check(broken.configs["hospital-2"])
    assert code == 2
    mine = key_peer_id(broken.folder / "hospital-2" / "node.key", None)
    listed = broken.roster.by_name("hospital-2").peer_id
    [line] = lines_of(out, "roster")
    assert line.startswith("[FAIL]") and f"this key's peer ID is {mine}" in line and listed in line
    assert f"fix: put {mine} as hospital-2's peer_id" in line and f"the key of {listed}" in line
    statuses = _statuses(out)
    assert statuses["config"] == statuses["key"] == "[ok]"
    later = ("topology", "aggregator", "data", "model", "privacy", "network")
    assert {statuses[n] for n in later} == {"[skip]"}


def test_a_missing_data_column_fails_data_and_the_network_is_still_checked(broken):
    code, out = check(broken.configs["hospital-3"])
    assert code == 2
    [line] = lines_of(out, "data")
    assert line.startswith("[FAIL]") and "bmi" in line and "\n       fix:" in line
    statuses = _statuses(out)
    assert statuses["topology"] == statuses["aggregator"] == "[ok]"
    assert statuses["model"] == statuses["privacy"] == "[skip]"
    assert statuses["network hospital-1"] == statuses["network hospital-2"] == "[FAIL]"  # none runs


def test_a_key_file_mode_other_than_0600_is_a_warning_with_the_chmod(broken):
    _, out = check(broken.configs["hospital-3"])
    [line] = lines_of(out, "key")
    key = broken.folder / "hospital-3" / "node.key"
    assert line.startswith("[!!]") and "mode 0400, not 0600" in line and f"fix: chmod 600 {key}" in line
