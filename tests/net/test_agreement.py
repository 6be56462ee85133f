"""Statistics agreement by signed flooding, over an in-memory network (no processes)."""

import functools
import io

import numpy as np
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.net import agreement, transfer
from p2pfl.net.agreement import Held, collect
from p2pfl.net.eventlog import EventLog
from p2pfl.protocol import stats_message as sm
from p2pfl.protocol.identity import peer_id_of

CID = bytes(range(32))
L = 6
TIMEOUTS = transfer.Timeouts(connect=1.0, chunk=1.0, ack=1.0)


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(agreement, "RETRY", 0.01)


def consortium(n: int):
    """Keys, peer IDs, display names and each member's own vector (distinct, seeded)."""
    keys = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(n)]
    members = [peer_id_of(k) for k in keys]
    names = {p: f"hospital-{i}" for i, p in enumerate(members)}
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=L) * 10.0 ** rng.integers(-5, 5, size=L) for _ in range(n)]
    return keys, members, names, vectors


def own(keys, vectors, i: int) -> Held:
    held = Held(L)
    held.add(i, sm.pack(keys[i], CID, i, vectors[i]))
    return held


def check_of(members):
    return functools.partial(sm.parse, consortium_id=CID, members=members, n_values=L)


def test_five_members_on_a_ring_agree_bit_for_bit():
    keys, members, names, vectors = consortium(5)
    helds = {p: own(keys, vectors, i) for i, p in enumerate(members)}
    logs = {p: io.StringIO() for p in members}
    results = {}
    late = members[3]  # not up for the first 0.1 s: its pulls fail until then

    async def fetch(peer: str) -> bytes:
        await trio.sleep(0)
        if peer == late and trio.current_time() < start + 0.1:
            raise transfer.TransferError("connection refused")
        return helds[peer].bundle()

    async def node(i: int) -> None:
        me = members[i]
        results[me] = await collect(helds[me], members, [members[(i - 1) % 5]], fetch,
                                    check_of(members), names, EventLog(names[me], logs[me]), 4.0)

    async def main() -> None:
        nonlocal start
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(node, i)

    start = 0.0
    trio.run(main)
    assert all(results.values()) and len(results) == 5
    combined = [b"".join(helds[p].values()[o].tobytes() for o in range(5)) for p in members]
    assert combined == [b"".join(v.tobytes() for v in vectors)] * 5
    for p in members:
        assert "event=statistics_agreed members=5" in logs[p].getvalue()
        assert "warn" not in logs[p].getvalue()


def test_an_altering_relay_is_caught_and_the_node_completes_via_another():
    keys, members, names, vectors = consortium(4)
    good = [sm.pack(k, CID, i, vectors[i]) for i, k in enumerate(keys)]
    altered = bytearray(good[3])
    altered[sm.HEAD.size + 8 * 2] ^= 0x01  # the relay changes member 3's third value
    relay = Held(L)  # node 1: its own message intact, member 3's altered
    relay.add(1, good[1])
    relay.add(3, bytes(altered))
    honest = Held(L)  # node 2: everything but member 1's (so 1's must come from the relay)
    for o in (0, 2, 3):
        honest.add(o, good[o])
    peers = {members[1]: relay, members[2]: honest}
    mine, out = own(keys, vectors, 0), io.StringIO()

    async def fetch(peer: str) -> bytes:
        await trio.sleep(0)
        if peer == members[2] and trio.current_time() < start + 0.1:
            raise transfer.TransferError("not up yet")  # the relay answers first, many times
        return peers[peer].bundle()

    async def main() -> bool:
        nonlocal start
        start = trio.current_time()
        return await collect(mine, members, [members[1], members[2]], fetch, check_of(members),
                             names, EventLog("hospital-0", out), 3.0)

    start = 0.0
    assert trio.run(main)
    assert {o: v.tobytes() for o, v in mine.values().items()} == {
        o: v.tobytes() for o, v in enumerate(vectors)}
    lines = [line for line in out.getvalue().splitlines() if "event=bad_statistics" in line]
    assert len(lines) == 1  # rate limited: one line however often the relay answered
    assert "peer=hospital-1" in lines[0] and "does not verify against member 3" in lines[0]


def test_a_missing_member_times_out_naming_it():
    keys, members, names, vectors = consortium(3)
    other = own(keys, vectors, 1)
    other.add(0, sm.pack(keys[0], CID, 0, vectors[0]))
    mine, out = own(keys, vectors, 0), io.StringIO()

    async def fetch(peer: str) -> bytes:
        await trio.sleep(0)
        if peer == members[2]:
            raise transfer.TransferError("connection refused")
        return other.bundle()

    async def main() -> bool:
        return await collect(mine, members, [members[1], members[2]], fetch, check_of(members),
                             names, EventLog("hospital-0", out), 0.3)

    assert trio.run(main) is False
    text = out.getvalue()
    assert "event=waiting_for_statistics have=1 need=3 missing=hospital-1,hospital-2" in text
    error = [line for line in text.splitlines() if "event=statistics_timeout" in line]
    assert len(error) == 1 and " error " in error[0] and "missing=hospital-2" in error[0]
    assert "statistics_agreed" not in text
    assert sorted(mine.values()) == [0, 1]


def test_equivocation_seen_by_a_pulling_node_is_logged():
    keys, members, names, vectors = consortium(3)
    first = Held(L)
    first.add(2, sm.pack(keys[2], CID, 2, vectors[2]))
    second = Held(L)
    second.add(1, sm.pack(keys[1], CID, 1, vectors[1]))
    second.add(2, sm.pack(keys[2], CID, 2, vectors[2] * 2))
    mine, out = own(keys, vectors, 0), io.StringIO()

    async def fetch(peer: str) -> bytes:
        if peer == members[1]:
            await trio.sleep(0.05)  # the second version arrives after the first
        return (second if peer == members[1] else first).bundle()

    assert trio.run(collect, mine, members, [members[1], members[2]], fetch, check_of(members),
                    names, EventLog("hospital-0", out), 2.0)
    assert mine.values()[2].tobytes() == vectors[2].tobytes()
    assert "event=statistics_conflict member=hospital-2 peer=hospital-1" in out.getvalue()


class FakeStream:
    """The read/write interface of a libp2p stream, over bytes; records how much was read."""

    def __init__(self, incoming: bytes = b""):
        self.incoming, self.written, self.read_total = incoming, bytearray(), 0

    async def read(self, n: int) -> bytes:
        chunk, self.incoming = self.incoming[:n], self.incoming[n:]
        self.read_total += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data


def test_serve_and_read_bundle_round_trip():
    keys, members, names, vectors = consortium(2)
    held = own(keys, vectors, 1)
    out = FakeStream()
    trio.run(agreement.serve, out, held, TIMEOUTS)
    assert out.written[:4] == len(held.bundle()).to_bytes(4, "big")
    got = trio.run(agreement.read_bundle, FakeStream(bytes(out.written)), sm.bundle_size(L, 2), TIMEOUTS)
    assert got == held.bundle()
    assert sm.split_bundle(got, L, 2) == [held.get(1)]


def test_read_bundle_checks_the_length_before_reading():
    keys, members, names, vectors = consortium(1)
    framed = FakeStream()
    trio.run(agreement.serve, framed, own(keys, vectors, 0), TIMEOUTS)
    stream = FakeStream(bytes(framed.written))
    with pytest.raises(transfer.TransferError, match="exceeds the limit"):
        trio.run(agreement.read_bundle, stream, sm.bundle_size(L, 1) - 1, TIMEOUTS)
    assert stream.read_total == 4


def test_a_node_that_holds_everything_agrees_at_once():
    keys, members, names, vectors = consortium(1)
    out = io.StringIO()

    async def fetch(peer: str) -> bytes:
        raise AssertionError("nothing to pull")

    assert trio.run(collect, own(keys, vectors, 0), members, [], fetch, check_of(members), names,
                    EventLog("hospital-0", out), 1.0)
    assert out.getvalue().count("\n") == 1 and "event=statistics_agreed members=1" in out.getvalue()


def test_held_keeps_the_first_and_knows_when_complete():
    keys, members, names, vectors = consortium(3)
    held = own(keys, vectors, 2)
    assert not held.add(2, b"other") and held.get(2) == sm.pack(keys[2], CID, 2, vectors[2])
    assert not held.complete(3) and held.complete(0)
    held.add(0, sm.pack(keys[0], CID, 0, vectors[0]))
    held.add(1, sm.pack(keys[1], CID, 1, vectors[1]))
    assert held.complete(3) and list(held.values()) == [0, 1, 2]
    assert sm.split_bundle(held.bundle(), L, 3) == [held.get(o) for o in range(3)]
