"""The audit log: hash chain, verify naming the first broken line, reopening, torn lines, CLI."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from p2pfl.cli import main
from p2pfl.errors import EXIT_INVALID, EXIT_OK, EXIT_STATE_WRITE, EXIT_USAGE, StateWriteError, UserError
from p2pfl.net.audit import AUDIT, GENESIS, AuditLog, line_hash, verify

DIGEST = hashlib.sha256(b"update").hexdigest()
PEER = "12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz"


def _events(log: AuditLog) -> None:
    """Six lines, like a short run of the daemon."""
    log.record("start", plan=DIGEST, roster=DIGEST)
    log.record("update_sent", round=1, peer=PEER, digest=DIGEST)
    log.record("update_accepted", round=1, peer=PEER, digest=DIGEST, reason="")
    log.record("update_refused", round=1, peer=PEER, digest=DIGEST, reason="stale round")
    log.record("statistics_agreed", sites=["a", "b"], epsilon=1.5, late=None, ok=True)
    log.record("stop", code=0)


@pytest.fixture
def six(tmp_path):
    """A state folder with a 6-line audit log; returns (folder, lines as bytes with newlines)."""
    with AuditLog(tmp_path, clock=lambda: 1_700_000_000.25) as log:
        _events(log)
    return tmp_path, (tmp_path / AUDIT).read_bytes().splitlines(keepends=True)


def _write(folder, lines) -> None:
    (folder / AUDIT).write_bytes(b"".join(lines))


def _entries(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / AUDIT).read_bytes().splitlines()]


def test_record_writes_a_chain_that_verifies(six):
    folder, lines = six
    entries = _entries(folder)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0]["prev"] == GENESIS
    assert all(e["prev"] == p["hash"] for p, e in zip(entries, entries[1:], strict=False))
    body = {k: v for k, v in entries[1].items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert entries[1]["hash"] == hashlib.sha256((entries[1]["prev"] + canonical).encode()).hexdigest()
    assert entries[1] | {"time": "t"} == {"seq": 2, "time": "t", "event": "update_sent", "round": 1,
                                          "peer": PEER, "digest": DIGEST, "prev": entries[0]["hash"],
                                          "hash": entries[1]["hash"]}
    assert entries[0]["time"] == "2023-11-14T22:13:20.250Z"
    assert list(entries[0])[:3] == ["seq", "time", "event"] and list(entries[0])[-2:] == ["prev", "hash"]
    result = verify(folder / AUDIT)
    assert (result.ok, result.lines, result.first_bad) == (True, 6, None)
    assert result.last_hash == entries[-1]["hash"]


def _edit_value(entry: dict) -> None:
    key = next(k for k in entry if k not in ("seq", "time", "event", "prev", "hash"))
    value = entry[key]
    entry[key] = value + 1 if type(value) is int else value + "x" if isinstance(value, str) else ["z"]


EDITS = {
    "field value": _edit_value,
    "time": lambda e: e.update(time=e["time"].replace("22:13", "22:14")),
    "event": lambda e: e.update(event="update_accepted" if e["event"] != "update_accepted" else "stop"),
    "added field": lambda e: e.update(note="x"),
    "hash": lambda e: e.update(hash="0" + e["hash"][1:] if e["hash"][0] != "0" else "1" + e["hash"][1:]),
    "prev": lambda e: e.update(prev="f" * 64),
    "seq": lambda e: e.update(seq=e["seq"] + 10),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("line", range(1, 7))
def test_editing_any_line_names_that_line(six, line, edit):
    folder, lines = six
    entry = json.loads(lines[line - 1])
    EDITS[edit](entry)
    lines[line - 1] = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    _write(folder, lines)
    result = verify(folder / AUDIT)
    assert (result.ok, result.first_bad, result.lines) == (False, line, 6), result.reason


@pytest.mark.parametrize("line", range(1, 7))
def test_a_rewritten_but_equal_line_is_still_refused(six, line):
    """Spacing changed only: the content hash still matches, the written form does not."""
    folder, lines = six
    lines[line - 1] = lines[line - 1].replace(b'","', b'", "', 1)
    _write(folder, lines)
    result = verify(folder / AUDIT)
    assert (result.ok, result.first_bad) == (False, line)
    assert "as p2pfl writes it" in result.reason


@pytest.mark.parametrize("line", range(1, 6))
def test_a_deleted_line_is_named(six, line):
    folder, lines = six
    _write(folder, lines[:line - 1] + lines[line:])
    result = verify(folder / AUDIT)
    assert (result.ok, result.first_bad) == (False, line)
    assert f"expected {line}" in result.reason


@pytest.mark.parametrize("line", range(1, 6))
def test_a_swapped_pair_is_named(six, line):
    folder, lines = six
    lines[line - 1], lines[line] = lines[line], lines[line - 1]
    _write(folder, lines)
    assert verify(folder / AUDIT).first_bad == line


@pytest.mark.parametrize("line", range(1, 7))
def test_an_inserted_line_is_named(six, line):
    """A copy of another line, or a well-formed line chained to its predecessor but with a seq
    already taken: both break the chain where they stand."""
    folder, lines = six
    _write(folder, lines[:line - 1] + [lines[-1 if line == 1 else 0]] + lines[line - 1:])
    assert verify(folder / AUDIT).first_bad == line


def test_a_forged_line_with_the_right_prev_breaks_the_next_line(six):
    folder, lines = six
    before = json.loads(lines[1])
    forged = {"seq": 3, "time": before["time"], "event": "update_accepted", "prev": before["hash"]}
    forged["hash"] = line_hash(forged)
    _write(folder, lines[:2] + [(json.dumps(forged, separators=(",", ":")) + "\n").encode()] + lines[2:])
    result = verify(folder / AUDIT)
    assert result.first_bad == 4 and "seq is 3, expected 4" in result.reason


@pytest.mark.parametrize("junk", [b"\n", b"not json\n", b"[1, 2]\n", b'{"seq": 2}\n', b"\xff\xfe\n"])
def test_a_line_that_is_not_an_entry_is_named(six, junk):
    folder, lines = six
    _write(folder, lines[:2] + [junk] + lines[2:])
    result = verify(folder / AUDIT)
    assert (result.first_bad, result.lines) == (3, 7)
    assert "not a JSON object" in result.reason


def test_a_duplicated_key_is_refused(six):
    folder, lines = six
    lines[2] = lines[2].replace(b'{"seq":3,', b'{"seq":3,"seq":3,')
    _write(folder, lines)
    assert verify(folder / AUDIT).first_bad == 3


def test_reopening_continues_the_chain(tmp_path):
    with AuditLog(tmp_path) as log:
        log.record("start", plan=DIGEST)
        last = log.record("stop", code=0)
    with AuditLog(tmp_path) as log:
        log.record("start", plan=DIGEST)
    entries = _entries(tmp_path)
    assert [e["seq"] for e in entries] == [1, 2, 3] and entries[2]["prev"] == last
    assert verify(tmp_path / AUDIT).ok


def test_reopening_a_long_log_reads_only_its_end(tmp_path, monkeypatch):
    """The last line is found across read blocks (a tiny block size forces several)."""
    monkeypatch.setattr("p2pfl.net.audit.TAIL_BLOCK", 7)
    with AuditLog(tmp_path) as log:
        for r in range(20):
            log.record("update_sent", round=r, peer=PEER, digest=DIGEST)
    with AuditLog(tmp_path) as log:
        log.record("stop", code=0)
    assert [e["seq"] for e in _entries(tmp_path)] == list(range(1, 22))
    assert verify(tmp_path / AUDIT).ok


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_a_torn_last_line_is_cut_and_recorded(six, keep):
    folder, lines = six
    torn = lines[keep][: len(lines[keep]) // 2]  # a crash half-way through line keep + 1
    _write(folder, lines[:keep] + [torn])
    first = verify(folder / AUDIT)
    assert (first.ok, first.first_bad) == (False, keep + 1) and "torn" in first.reason
    with AuditLog(folder) as log:
        log.record("start", plan=DIGEST)
    entries = _entries(folder)
    assert [e["event"] for e in entries[keep:]] == ["torn_line_removed", "start"]
    assert entries[keep]["bytes"] == len(torn)
    assert entries[keep]["digest"] == hashlib.sha256(torn).hexdigest()
    assert verify(folder / AUDIT).ok


def test_a_whole_last_line_without_its_newline_is_kept(six):
    folder, lines = six
    _write(folder, lines[:-1] + [lines[-1].rstrip(b"\n")])
    with AuditLog(folder) as log:
        log.record("start", plan=DIGEST)
    assert [e["event"] for e in _entries(folder)][-2:] == ["stop", "start"]
    assert verify(folder / AUDIT).lines == 7 and verify(folder / AUDIT).ok


def test_a_bad_line_before_the_end_is_not_hidden_by_reopening(six):
    folder, lines = six
    _write(folder, lines + [b"garbage\n"])
    with AuditLog(folder) as log:
        log.record("start", plan=DIGEST)
    entries = (folder / AUDIT).read_bytes().splitlines()
    assert json.loads(entries[-1])["seq"] == 7  # continues after the last well-formed line
    assert verify(folder / AUDIT).first_bad == 7


@pytest.mark.parametrize("fields", [
    {"key": b"secret"}, {"weights": [1.0]}, {"nested": {"a": 1}}, {"seq": 3}, {"hash": "x"},
    {"Bad-Name": 1}, {"x": float("nan")},
])
def test_fields_outside_the_allowed_types_are_a_programming_error(tmp_path, fields):
    with AuditLog(tmp_path) as log, pytest.raises(ValueError):
        log.record("start", **fields)
    assert (tmp_path / AUDIT).read_bytes() == b""


def test_a_write_error_names_the_file(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    os.symlink("/dev/full", tmp_path / AUDIT)
    with AuditLog(tmp_path) as log, pytest.raises(StateWriteError) as err:
        log.record("start", plan=DIGEST)
    assert str(tmp_path / AUDIT) in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == EXIT_STATE_WRITE


def test_an_unopenable_state_folder_is_a_state_write_error(tmp_path):
    with pytest.raises(StateWriteError, match="cannot open the audit log"):
        AuditLog(tmp_path / "missing")


def test_verify_of_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(UserError, match="no audit log"):
        verify(tmp_path / AUDIT)


def test_cli_intact_chain(six, capsys):
    folder, _ = six
    assert main(["audit", "verify", str(folder)]) == EXIT_OK
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{folder / AUDIT}: 6 lines, chain intact (last hash ")
    assert out.count("\n") == 0 and _entries(folder)[-1]["hash"] in out
    assert main(["audit", "verify", str(folder / AUDIT)]) == EXIT_OK  # the file itself also works


def test_cli_names_the_broken_line(six, capsys):
    folder, lines = six
    lines[3] = lines[3].replace(b"stale round", b"stale roune")
    _write(folder, lines)
    assert main(["audit", "verify", str(folder)]) == EXIT_INVALID
    assert capsys.readouterr().out == (f"{folder / AUDIT}:4: hash does not match the line's content: "
                                       "the line was edited\n")


def test_cli_missing_log_is_exit_2(tmp_path, capsys):
    assert main(["audit", "verify", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / AUDIT) in err


def test_a_running_consortium_writes_a_chain_that_verifies_and_names_an_edited_line(consortium, capsys):
    import json

    from p2pfl.cli import main

    c = consortium(nodes=3, rounds=2, topology="ring", round_timeout=10.0)
    c.start()
    assert c.wait() == {name: 0 for name in c.names}
    state = c.folder / "hospital-1" / "state"
    lines = (state / "audit.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events[0] == "start" and events[-1] == "stop"
    # ring: 2 rounds x 2 out-neighbours sent, and 2 x 2 in-neighbours accepted
    assert events.count("update_sent") == 4 and events.count("update_accepted") == 4
    sent = [json.loads(line) for line in lines if '"update_sent"' in line]
    assert all(len(s["digest"]) == 64 and s["ack"] == "accepted" for s in sent)
    assert main(["audit", "verify", str(state)]) == 0
    assert "chain intact" in capsys.readouterr().out
    edited = lines[:]
    edited[3] = edited[3].replace('"round":1', '"round":0') if '"round":1' in edited[3] else edited[3] + " "
    (state / "audit.jsonl").write_text("\n".join(edited) + "\n")
    assert main(["audit", "verify", str(state)]) == 5
    assert "audit.jsonl:4:" in capsys.readouterr().out
