"""`p2pfl status` parts without processes: the status view, its rebuild from a state folder,
the admin socket, and status-line gossip over in-memory streams."""

import io
import json
import os
import stat

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.net import admin, status_gossip, transfer
from p2pfl.net.audit import AuditLog
from p2pfl.net.checkpoint import append_metrics
from p2pfl.net.eventlog import EventLog
from p2pfl.net.status import MAX_REASONS, WINDOW, NodeStatus, from_state_dir
from p2pfl.net.status_gossip import StatusGossip
from p2pfl.protocol import status_line as sl
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.status_line import State, StatusLine

NAMES = ["hospital-1", "hospital-2", "hospital-3"]
KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(3)]
MEMBERS = [peer_id_of(k) for k in KEYS]
BY_PEER = dict(zip(MEMBERS, NAMES, strict=True))
CID = bytes(range(32))
TIMEOUTS = transfer.Timeouts(connect=1.0, chunk=1.0, ack=1.0)


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_snapshot_holds_every_member_in_roster_order_and_refusals_of_the_last_hour():
    clock = Clock()
    status = NodeStatus("hospital-1", NAMES, 10, clock)
    status.set(State.TRAINING, 4)
    status.heard("hospital-2", 3, "update")
    status.heard("hospital-2", 4, "status line", State.EXCHANGING)
    status.heard("hospital-2", 2, "update")  # older news changes nothing
    status.refused("rejected", "signature does not verify for round 12", at=clock.now - WINDOW - 1)
    for r in (3, 5):
        status.refused("refused", f"stale: this node is at round {r}")
    status.row({"round": 3, "val_accuracy": 0.9, "val_auroc": 0.95, "epsilon": 1.5, "bytes_in": 7})
    clock.now += 2.5
    snap = status.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert (snap["state"], snap["round"], snap["rounds"], snap["epsilon"]) == ("training", 4, 10, 1.5)
    assert snap["validation"] == {"val_accuracy": 0.9, "val_auroc": 0.95}
    assert [m["name"] for m in snap["members"]] == NAMES
    me, two, three = snap["members"]
    assert (me["round"], me["via"], me["seconds_ago"]) == (4, "self", 0.0)
    assert (two["round"], two["state"], two["via"]) == (4, "exchanging", "status line")
    assert two["seconds_ago"] == 2.5
    assert three["round"] is None and three["last_heard"] is None
    # the hour-old refusal is gone; the two stale ones are one reason (digits normalised)
    assert snap["refused_last_hour"] == [{"result": "refused", "reason": "stale: this node is at round N",
                                          "count": 2}]


def test_what_a_peer_can_make_a_node_keep_is_bounded():
    status = NodeStatus("hospital-1", NAMES, 10, Clock())
    for i in range(10_000):
        status.refused("rejected", f"reason-{chr(97 + i % 26)}{chr(97 + i // 26 % 26)} " + "x" * 500)
    assert len(status.refusals) <= 4096
    shown = status.snapshot()["refused_last_hour"]
    assert len(shown) == MAX_REASONS and all(len(r["reason"]) <= 100 for r in shown)


def test_a_stopped_nodes_status_is_rebuilt_from_its_state_folder(tmp_path):
    clock = Clock(1_700_000_000.0)
    with AuditLog(tmp_path, clock=clock) as audit:
        audit.record("start", round=0)
        audit.record("update_accepted", round=0, peer="hospital-2", digest="ab", reason="")
        audit.record("update_accepted", round=1, peer="hospital-2", digest="cd", reason="")
        audit.record("update_rejected", round=1, peer="hospital-3", digest="ef", reason="bad shape")
        audit.record("stop", exit_code=0, round=2)
    for r in (0, 1):
        append_metrics(tmp_path, {"round": r, "val_accuracy": 0.5 + r / 10, "epsilon": None})
    clock.now += 60
    snap = from_state_dir(tmp_path, "hospital-1", NAMES, 5, clock).snapshot(running=False)
    assert (snap["running"], snap["state"], snap["round"], snap["note"]) == (False, "stopped", 2, None)
    assert snap["validation"] == {"val_accuracy": 0.6}
    assert [(m["round"], m["via"], m["seconds_ago"]) for m in snap["members"][1:]] == [
        (1, "update", 60.0), (None, None, None)]
    assert snap["refused_last_hour"] == [{"result": "rejected", "reason": "bad shape", "count": 1}]
    with AuditLog(tmp_path, clock=clock) as audit:
        audit.record("start", round=2)  # started again, then killed: no stop line
    again = from_state_dir(tmp_path, "hospital-1", NAMES, 5, clock).snapshot(running=False)
    assert "killed or crashed" in again["note"]
    for r in range(2, 5):
        append_metrics(tmp_path, {"round": r, "val_accuracy": 0.9, "epsilon": None})
    assert from_state_dir(tmp_path, "hospital-1", NAMES, 5, clock).snapshot(running=False)["state"] == "done"


@pytest.mark.trio
@pytest.mark.parametrize("depth", [1, 12])  # 12 folders of 10 letters: past the kernel's 107 bytes
async def test_the_admin_socket_answers_its_owner_only_and_goes_away(tmp_path, depth):
    state = tmp_path.joinpath(*["f" * 10] * depth)
    state.mkdir(parents=True)
    assert admin.query(state) is None  # no node
    snap = {"node": "hospital-1", "round": 3}
    async with trio.open_nursery() as nursery:
        await nursery.start(admin.serve, state, lambda: snap)
        assert stat.S_IMODE(os.stat(admin.socket_path(state)).st_mode) == 0o600
        answers = [await trio.to_thread.run_sync(admin.query, state) for _ in range(3)]
        assert answers == [snap] * 3
        nursery.cancel_scope.cancel()
    assert not admin.socket_path(state).exists() and admin.query(state) is None


@pytest.mark.trio
async def test_a_stale_socket_file_is_not_an_answer_and_is_replaced(tmp_path):
    admin.socket_path(tmp_path).write_text("")  # left by a node killed with -9, say
    assert admin.query(tmp_path) is None
    async with trio.open_nursery() as nursery:
        await nursery.start(admin.serve, tmp_path, lambda: {"ok": True})
        assert await trio.to_thread.run_sync(admin.query, tmp_path) == {"ok": True}
        nursery.cancel_scope.cancel()


class Stream:
    """An in-memory stream holding what a peer wrote."""

    def __init__(self, data: bytes = b""):
        self.data, self.written, self.was_reset = bytearray(data), bytearray(), False

    async def read(self, n: int) -> bytes:
        await trio.sleep(0)
        chunk, self.data = bytes(self.data[:n]), self.data[n:]
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        self.was_reset = True


def gossip(i: int, log=None) -> StatusGossip:
    status = NodeStatus(NAMES[i], NAMES, 10)
    log = log or EventLog(NAMES[i], io.StringIO())
    return StatusGossip(KEYS[i], CID, i, MEMBERS, BY_PEER, 10, status, log, TIMEOUTS)


def line(i: int, round: int, state: State = State.TRAINING, key=None) -> bytes:
    return sl.pack(key or KEYS[i], CID, StatusLine(i, round, state, 1))


@pytest.mark.trio
async def test_a_relay_keeps_the_newest_checked_line_of_each_member_and_passes_it_on():
    out = io.StringIO()
    middle = gossip(1, EventLog("hospital-2", out))
    forged = bytearray(line(2, 9))
    forged[42] ^= 1
    push = sl.pack_bundle([line(0, 3), bytes(forged), line(1, 8)])  # member 0's, a forgery, its own
    assert await middle.answer(Stream(push), MEMBERS[0]) == [MEMBERS[0]]
    assert "status_rejected" in out.getvalue() and "signature" in out.getvalue()
    assert middle.status.heard_from["hospital-1"].round == 3
    status_gossip.MIN_GAP = 0.0
    try:
        assert await middle.answer(Stream(sl.pack_bundle([line(0, 2)])), MEMBERS[2]) == []  # older
        assert await middle.answer(Stream(sl.pack_bundle([line(0, 4)])), MEMBERS[2]) == [MEMBERS[0]]
    finally:
        status_gossip.MIN_GAP = 0.05
    sent: dict[str, list[bytes]] = {}

    async def open_stream(peer: str) -> Stream:
        stream = Stream()
        sent.setdefault(peer, []).append(stream.written)
        return stream

    async with trio.open_nursery() as nursery:
        middle.start(nursery, open_stream)
        middle.spread([MEMBERS[0]], MEMBERS, came_from=MEMBERS[2])  # not back to where it came from
        middle.say(5, State.EXCHANGING, MEMBERS)
        with trio.fail_after(5):
            while len(sent.get(MEMBERS[2], [])) < 1 or len(sent.get(MEMBERS[0], [])) < 1:
                await trio.sleep(0.01)
        await trio.sleep(3 * status_gossip.PUSH_EVERY)
        nursery.cancel_scope.cancel()
    assert MEMBERS[1] not in sent  # never to itself
    lines = {peer: [sl.parse(bytes(b[2 + k * sl.LINE_SIZE : 2 + (k + 1) * sl.LINE_SIZE]), CID, MEMBERS, 10)
                    for b in pushes for k in range(sl.COUNT.unpack(bytes(b[:2]))[0])]
             for peer, pushes in sent.items()}
    assert {(x.origin, x.round) for x in lines[MEMBERS[0]]} == {(1, 5)}  # not its own line back
    assert {(x.origin, x.round) for x in lines[MEMBERS[2]]} == {(1, 5)}  # 0's came from it


@pytest.mark.trio
async def test_a_bundle_claiming_more_lines_than_members_and_a_flood_of_pushes_are_cut_off_unread():
    node = gossip(0)
    claim = Stream(sl.COUNT.pack(4) + line(1, 1) * 4)
    assert await node.answer(claim, MEMBERS[1]) == [] and claim.was_reset
    assert len(claim.data) == 4 * sl.LINE_SIZE  # not one line read
    again = Stream(sl.pack_bundle([line(1, 2)]))
    assert await node.answer(again, MEMBERS[1]) == [] and again.was_reset  # within MIN_GAP
