"""Membership that changes with no coordinator, against real node processes on 127.0.0.1: a
hospital admitted at round 10, a key rotated at 15, a member removed at 20, and versions
signed by too few members or by a removed one refused."""

from __future__ import annotations

import trio
from strangers import handshake

from p2pfl.files.keys import save_key
from p2pfl.files.roster_file import load_roster
from p2pfl.net.host import key_pair
from p2pfl.protocol import roster_chain as rc
from p2pfl.protocol.identity import Ed25519PrivateKey, peer_id_of
from p2pfl.protocol.roster import Roster
from p2pfl.protocol.roster_chain import RosterVersion

ROUNDS = 30
NEW_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def logged(c, name: str, event: str, **fields) -> bool:
    """Whether `name`'s log has a line of `event` with these key=value fields."""
    want = [f"event={event}"] + [f"{k}={v}" for k, v in fields.items()]
    return any(all(w in line.split() for w in want) for line in c.log(name).splitlines())


def sign(version: RosterVersion, keys: dict, *names: str) -> RosterVersion:
    for name in names:
        version = version.signed(keys[name])
    return version


def install(c, name: str, version: RosterVersion) -> None:
    """What an operator does: copy the signed version over this member's roster.toml."""
    (c.folder / name / "roster.toml").write_text(rc.version_to_toml(version))


def test_a_member_joins_one_leaves_one_rotates_its_key_and_all_finish(consortium):
    c = consortium(nodes=6, rounds=ROUNDS, round_timeout=10.0, topology="ring")
    six = load_roster(c.folder / "roster.toml")
    v1 = RosterVersion(Roster([m for m in six.members if m.name != "hospital-6"]))
    keys = {n: c.key(n) for n in c.names}
    for name in c.names:  # each member holds its own copy of the roster
        c.configure("node", 'roster = "roster.toml"', name)
        install(c, name, v1)
    five = c.names[:5]
    c.start(*five)
    c.wait_for(lambda: len(c.metrics("hospital-1")) >= 2, what="two rounds")

    v2 = rc.next_version(v1, rc.added(v1.roster, six.by_name("hospital-6")), effective_round=10)
    too_few = v2.signed(keys["hospital-1"]).signed(keys["hospital-2"])
    install(c, "hospital-2", too_few)
    c.wait_for(lambda: logged(c, "hospital-2", "roster_version_refused"), what="too few signatures refused")
    assert "needs 3" in c.log("hospital-2")
    v2 = too_few.signed(keys["hospital-4"])
    install(c, "hospital-1", v2)
    install(c, "hospital-6", v2)  # the new hospital's roster: the version that admits it
    c.start("hospital-6")
    c.wait_for(lambda: all(logged(c, n, "roster_version_accepted", version=2) for n in five),
               what="version 2 everywhere")

    v3 = rc.next_version(v2, rc.rotated(v2.roster, "hospital-3", peer_id_of(NEW_KEY)), effective_round=15)
    v3 = sign(v3, keys, "hospital-1", "hospital-2", "hospital-6", "hospital-4")
    install(c, "hospital-2", v3)
    c.wait_for(lambda: all(logged(c, n, "roster_version_accepted", version=3) for n in c.names),
               what="version 3 everywhere")
    v4 = rc.next_version(v3, rc.removed(v3.roster, "hospital-5"), effective_round=20)
    v4 = sign(v4, keys, "hospital-1", "hospital-2", "hospital-6", "hospital-4")
    install(c, "hospital-6", v4)
    c.wait_for(lambda: all(logged(c, n, "roster_version_accepted", version=4) for n in c.names
                           if n != "hospital-3"), what="version 4 everywhere")

    # hospital-3's old key is done at round 15: it exits 7 and starts again with the new one
    assert c.wait("hospital-3") == {"hospital-3": 7}
    assert logged(c, "hospital-3", "key_rotated", round=15)
    save_key(NEW_KEY, c.folder / "hospital-3" / "node.key", overwrite=True)
    c.start("hospital-3")

    v5 = rc.next_version(v4, rc.removed(v4.roster, "hospital-4"), effective_round=28)
    by_removed = v5.signed(keys["hospital-5"]).signed(keys["hospital-1"]).signed(keys["hospital-2"])
    c.wait_for(lambda: len(c.metrics("hospital-1")) >= 21, what="round 21")
    install(c, "hospital-4", by_removed)
    codes = c.wait()
    assert codes == dict.fromkeys(c.names, 0), codes
    assert logged(c, "hospital-4", "roster_version_refused", version=5)
    assert "not a member of version 4" in c.log("hospital-4")

    rows = {n: c.metrics(n) for n in c.names}
    for name in ("hospital-1", "hospital-2", "hospital-3", "hospital-4"):
        assert [r["round"] for r in rows[name]] == list(range(ROUNDS)), name
    assert [r["round"] for r in rows["hospital-6"]] == list(range(10, ROUNDS))
    assert [r["round"] for r in rows["hospital-5"]] == list(range(20))
    assert logged(c, "hospital-5", "removed_from_roster", round=20)
    assert logged(c, "hospital-6", "joined", round=10)
    for r in rows["hospital-1"][20:]:
        assert "hospital-5" not in r["heard_from"]
    assert all("hospital-6" in r["heard_from"] for r in rows["hospital-1"][10:])  # ring neighbours
    assert all(not r["missing"] for r in rows["hospital-1"][21:])

    # the removed member's key is refused at the handshake from round 20 on
    address = c.roster.by_name("hospital-1").addresses[0]
    completed, refused = trio.run(handshake, address, c.roster.by_name("hospital-1").peer_id,
                                  key_pair(keys["hospital-5"]), 5.0)
    assert refused or not completed

    # the same five, with the first roster throughout: the changes cost no accuracy
    fixed = consortium("fixed", nodes=5, rounds=ROUNDS, round_timeout=10.0, topology="ring")
    fixed.start()
    assert fixed.wait() == dict.fromkeys(fixed.names, 0)
    remaining = ("hospital-1", "hospital-2", "hospital-3", "hospital-4")
    changed = sum(rows[n][-1]["val_accuracy"] for n in remaining) / 4
    steady = sum(fixed.metrics(n)[-1]["val_accuracy"] for n in remaining) / 4
    assert abs(changed - steady) <= 0.01, (changed, steady)
