"""Signed roster versions: the chain rules, every way a version can be refused, and the text."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import roster_chain as rc
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.roster import InvalidRoster, Member, Roster, parse_roster
from p2pfl.protocol.roster_chain import RosterVersion

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(8)]
IDS = [peer_id_of(k) for k in KEYS]


def member(i: int, peer: int | None = None) -> Member:
    return Member(f"hospital-{i + 1}", IDS[i if peer is None else peer], (f"/ip4/127.0.0.1/tcp/{9001 + i}",))


FIVE = RosterVersion(Roster([member(i) for i in range(5)]))


def signed_by(v: RosterVersion, *who: int) -> RosterVersion:
    for i in who:
        v = v.signed(KEYS[i])
    return v


def test_a_sixth_member_is_admitted_with_three_of_five_signatures():
    assert FIVE.needed() == 3
    v2 = rc.next_version(FIVE, rc.added(FIVE.roster, member(5)), effective_round=10)
    assert (v2.version, v2.previous, v2.effective_round) == (2, FIVE.digest(), 10)
    rc.check_successor(FIVE, signed_by(v2, 0, 2, 4))
    too_few = r"signed by 2 of version 1's 5 members \(hospital-1, hospital-3\); it needs 3"
    with pytest.raises(InvalidRoster, match=too_few):
        rc.check_successor(FIVE, signed_by(v2, 0, 2, 2))  # the same member twice counts once


def test_a_removed_or_outside_signer_makes_a_version_invalid():
    v2 = signed_by(rc.next_version(FIVE, rc.removed(FIVE.roster, "hospital-5"), 20), 0, 1, 2)
    rc.check_successor(FIVE, v2)
    v3 = rc.next_version(v2, rc.added(v2.roster, member(6)), 25)
    with pytest.raises(InvalidRoster, match=f"signed by {IDS[4]}, not a member of version 2"):
        rc.check_successor(v2, signed_by(v3, 0, 1, 4))  # hospital-5 was removed in version 2
    rc.check_chain([FIVE, v2, signed_by(v3, 0, 1, 2)])


def test_a_rotated_key_signs_the_versions_after_it():
    v2 = signed_by(rc.next_version(FIVE, rc.rotated(FIVE.roster, "hospital-2", IDS[7]), 15), 1, 2, 3)
    assert v2.roster.by_name("hospital-2").peer_id == IDS[7]
    rc.check_successor(FIVE, v2)  # the old key may sign its own rotation
    v3 = rc.next_version(v2, rc.readdressed(v2.roster, "hospital-3", ["/ip4/10.0.0.3/tcp/9001"]), 16)
    with pytest.raises(InvalidRoster, match="not a member of version 2"):
        rc.check_successor(v2, signed_by(v3, 1, 2, 3))  # the rotated-out key no longer counts
    rc.check_successor(v2, signed_by(v3, 7, 2, 3))


@pytest.mark.parametrize("change, match", [
    (lambda v: v.__class__(v.roster, 3, 0, 10, FIVE.digest()), "version 3 does not follow version 1"),
    (lambda v: v.__class__(v.roster, 2, 0, 10, "ab" * 32), "not based on the version 1 held here"),
    (lambda v: v.__class__(FIVE.roster.__class__([member(i) for i in range(4)]), 2, 0, 0, FIVE.digest()),
     "takes effect at round 0, not after"),
    (lambda v: v.__class__(v.roster, 2, 9, 10, FIVE.digest()), "threshold must be 0"),
])
def test_a_version_out_of_sequence_is_refused_in_one_line(change, match):
    bad = signed_by(change(rc.next_version(FIVE, rc.removed(FIVE.roster, "hospital-1"), 10)), 1, 2, 3)
    with pytest.raises(InvalidRoster, match=match):
        rc.check_successor(FIVE, bad)


def test_an_altered_version_no_longer_verifies():
    v2 = signed_by(rc.next_version(FIVE, rc.removed(FIVE.roster, "hospital-4"), 12), 0, 1, 2)
    forged = RosterVersion(v2.roster, 2, 0, 11, v2.previous, v2.signatures)  # another round
    with pytest.raises(InvalidRoster, match="the signature of hospital-1 does not verify"):
        rc.check_successor(FIVE, forged)


@pytest.mark.parametrize("change, match", [
    (lambda r: rc.removed(r, "hospital-9"), "no member 'hospital-9'"),
    (lambda r: rc.added(r, member(0, peer=7)), "already a member"),
    (lambda r: rc.added(r, member(5, peer=0)), "same peer_id"),
    (lambda r: rc.rotated(r, "hospital-1", IDS[0]), "already has peer ID"),
])
def test_changes_that_make_no_sense_are_refused(change, match):
    with pytest.raises(InvalidRoster, match=match):
        change(FIVE.roster)


def test_the_text_round_trips_and_plain_rosters_are_version_1():
    v2 = signed_by(rc.next_version(FIVE, rc.added(FIVE.roster, member(5)), 10), 0, 1, 2)
    text = rc.version_to_toml(v2)
    assert rc.parse_version(text) == v2 and parse_roster(text) == v2.roster
    plain = rc.parse_version(text.split("[[member]]", 1)[0].split("version =")[0] + "[[member]]"
                             + text.split("[[member]]", 1)[1].split("[[signature]]")[0])
    assert (plain.version, plain.previous, plain.signatures) == (1, "", ())


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("version = 2", "version = \"2\""), "version must be a whole number"),
    (lambda t: t.replace('value = "', 'value = "zz'), "value must be hex"),
    (lambda t: t.replace("[[signature]]\npeer_id", "[[signature]]\nwho = 1\npeer_id"), "exactly the keys"),
    (lambda t: t.replace("previous = ", "previous = \"x\"\nold = "), "unknown top-level key"),
    (lambda t: t + "\n" + "#" * rc.MAX_TEXT, "more than"),
    (lambda t: "x = " + "[" * 5000 + "]" * 5000, "not valid TOML"),
])
def test_bad_text_is_one_line(edit, match):
    text = rc.version_to_toml(signed_by(rc.next_version(FIVE, rc.added(FIVE.roster, member(5)), 10), 0))
    with pytest.raises(InvalidRoster, match=match):
        rc.parse_version(edit(text), "roster.toml")
