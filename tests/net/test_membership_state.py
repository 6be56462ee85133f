"""The roster versions a node holds (net/membership): stored, checked again at a restart, the
configured file as one more offer, and members with different versions told apart at once."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.errors import UserError
from p2pfl.net.membership import Membership
from p2pfl.protocol import roster_chain as rc
from p2pfl.protocol.consortium import differences
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.roster import Member, Roster
from p2pfl.protocol.roster_chain import RosterVersion
from p2pfl.settings.load import node_settings

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(4)]
V1 = RosterVersion(Roster([Member(f"h{i}", peer_id_of(k), (f"/ip4/127.0.0.1/tcp/{9001 + i}",))
                           for i, k in enumerate(KEYS[:3])]))


def signed(v: RosterVersion, *who: int) -> RosterVersion:
    for i in who:
        v = v.signed(KEYS[i])
    return v


V2 = signed(rc.next_version(V1, rc.removed(V1.roster, "h2"), effective_round=5), 0, 1)


@pytest.fixture
def node(write_config, tmp_path):
    def make(version: RosterVersion):
        (tmp_path / "roster.toml").write_text(rc.version_to_toml(version))
        return node_settings(write_config(name="h0"))
    return make


def test_the_anchor_is_stored_and_a_newer_configured_version_is_taken_at_start(node, tmp_path):
    settings = node(V1)
    state = tmp_path / "state"
    m = Membership.load(settings, state)
    assert [e.version for e in m.eras] == [V1] and (state / "rosters" / "v1.toml").exists()
    settings = node(V2)  # the operator installed version 2 while the node was down
    m = Membership.load(settings, state)
    assert [e.version.version for e in m.eras] == [1, 2] and (state / "rosters" / "v2.toml").exists()
    assert m.at(4).version == V1 and m.at(5).version == V2 and m.at(99).members == list(V2.roster.peer_ids)
    assert m.data_share("h1") == (1, 3)  # its share of a shared dataset: the first version's
    again = Membership.load(node(V1), state)  # the anchor file back: the stored chain still holds
    assert [e.version.version for e in again.eras] == [1, 2]


def test_a_stored_or_configured_version_that_does_not_check_is_one_line(node, tmp_path):
    state = tmp_path / "state"
    Membership.load(node(V2.__class__(V1.roster)), state)
    forged = V2.__class__(V2.roster, 2, 0, 6, V2.previous, V2.signatures)  # its round edited
    with pytest.raises(UserError, match="signature of h0 does not verify"):
        Membership.load(node(forged), state)
    Membership.load(node(V2), state)
    (state / "rosters" / "v2.toml").write_text(rc.version_to_toml(forged))
    with pytest.raises(UserError, match="does not verify"):
        Membership.load(node(V1), state)
    (state / "rosters" / "v2.toml").write_text(rc.version_to_toml(V2))
    other = signed(rc.next_version(V1, rc.removed(V1.roster, "h1"), effective_round=5), 0, 2)
    with pytest.raises(UserError, match="version 2 differs from the version 2 this node holds"):
        Membership.load(node(other), state)


def test_a_version_is_refused_once_its_round_has_come_and_nothing_is_written_when_told(node, tmp_path):
    m = Membership.load(node(V1), tmp_path / "check", store=False)
    assert not (tmp_path / "check").exists()
    assert "this node is at round 5" in m.refusal(V2, current_round=5)
    assert m.refusal(V2, current_round=4) is None


def test_members_holding_different_versions_say_which_at_first_contact(node, tmp_path):
    Membership.load(node(V1), tmp_path / "state")
    old, new = Membership.load(node(V2), tmp_path / "state").eras
    reason = differences(new.consortium.id, new.consortium.sections, old.consortium, new.plan, old.plan)
    assert "roster_version: 1 here, 2 at the peer" in reason
    assert "members only here" in reason and "h2" in reason
