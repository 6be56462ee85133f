"""The consortium roster file and the multiaddr syntax check."""

import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.errors import UserError
from p2pfl.files.roster_file import load_roster, write_roster
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.multiaddr import InvalidMultiaddr, check_dialable_tcp, parse_multiaddr
from p2pfl.protocol.roster import InvalidRoster, Member, Roster, parse_roster

IDS = [peer_id_of(Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32)) for i in range(1, 5)]


def member_toml(name: str, peer_id: str, *addresses: str) -> str:
    addrs = ", ".join(f'"{a}"' for a in addresses)
    return f'[[member]]\nname = "{name}"\npeer_id = "{peer_id}"\naddresses = [{addrs}]\n\n'


GOOD = (
    member_toml("zeta", IDS[0], "/ip4/127.0.0.1/tcp/9003")
    + member_toml(
        "alpha", IDS[1], "/ip4/127.0.0.1/tcp/9001", f"/dns4/alpha.example.org/tcp/9001/p2p/{IDS[1]}"
    )
    + member_toml("mid", IDS[2], "/ip6/::1/tcp/9002")
)


# ---- multiaddr


@pytest.mark.parametrize(
    "text",
    [
        "/ip4/127.0.0.1/tcp/9001",
        "/ip6/::1/tcp/0",
        "/ip6/2001:db8::1/udp/65535",
        "/dns/hospital-a.example.org/tcp/443",
        "/dns4/localhost/tcp/1",
        "/dns6/a.b.c./tcp/1",
        f"/ip4/10.0.0.1/tcp/9001/p2p/{IDS[0]}",
        f"/p2p/{IDS[0]}",
    ],
)
def test_valid_multiaddrs(text):
    assert "/" + "/".join(f"{p}/{v}" for p, v in parse_multiaddr(text)) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ip4/127.0.0.1/tcp/1", "does not start with '/'"),
        ("/ip4/127.0.0.1/tcp/1/", "ends with '/'"),
        ("/ip4/127.0.0.1/tcp", "has no value"),
        ("/ip4/256.0.0.1/tcp/1", "not an IPv4 address"),
        ("/ip4/127.0.0.01/tcp/1", "not an IPv4 address"),
        ("/ip4//tcp/1", "not an IPv4 address"),
        ("/ip6/1.2.3.4/tcp/1", "not an IPv6 address"),
        ("/ip6/fe80::1%eth0/tcp/1", "zone index"),
        ("/dns4/-bad.example/tcp/1", "not a DNS name"),
        ("/dns4/a..b/tcp/1", "not a DNS name"),
        ("/dns4/a_b/tcp/1", "not a DNS name"),
        ("/ip4/1.2.3.4/tcp/65536", "not a port number"),
        ("/ip4/1.2.3.4/tcp/-1", "not a port number"),
        ("/ip4/1.2.3.4/tcp/1e3", "not a port number"),
        ("/ip4/1.2.3.4/tcp/０", "not a port number"),
        ("/ip4/1.2.3.4/tcp/09001", "leading zero"),
        ("/ip4/1.2.3.4/sctp/1", "unknown protocol 'sctp'"),
        ("/ip4/1.2.3.4/tcp/1/p2p/QmNotAnEd25519Id", "not a valid peer ID"),
        ("/dns4/" + "a" * 1030 + "/tcp/1", "at most 1024"),
    ],
)
def test_invalid_multiaddrs(text, reason):
    with pytest.raises(InvalidMultiaddr, match=reason):
        parse_multiaddr(text)


@pytest.mark.parametrize(
    "text", ["/ip4/1.2.3.4/udp/1", "/tcp/1", "/ip4/1.2.3.4", "/ip4/1.2.3.4/tcp/0", f"/p2p/{IDS[0]}"]
)
def test_roster_addresses_must_be_dialable_tcp(text):
    with pytest.raises(InvalidMultiaddr):
        check_dialable_tcp(text)


# ---- roster


def test_roster_is_sorted_by_name_and_looked_up(tmp_path):
    path = tmp_path / "consortium.toml"
    path.write_text(GOOD)
    roster = load_roster(path)
    assert [m.name for m in roster] == ["alpha", "mid", "zeta"]
    assert roster.peer_ids == (IDS[1], IDS[2], IDS[0])
    assert roster.index_of(IDS[0]) == 2
    assert roster.by_peer_id(IDS[2]) == Member("mid", IDS[2], ("/ip6/::1/tcp/9002",))
    assert roster.by_name("alpha").peer_id == IDS[1]
    assert roster.by_peer_id(IDS[3]) is None and roster.by_name("nobody") is None
    assert IDS[0] in roster and IDS[3] not in roster
    with pytest.raises(KeyError):
        roster.index_of(IDS[3])


def test_member_order_does_not_depend_on_file_order():
    blocks = GOOD.split("\n\n")
    shuffled = "\n\n".join([blocks[2], blocks[0], blocks[1]]) + "\n"
    assert parse_roster(shuffled).peer_ids == parse_roster(GOOD).peer_ids


def test_write_then_load_round_trips(tmp_path):
    roster = parse_roster(GOOD)
    path = tmp_path / "out.toml"
    write_roster(path, roster)
    assert load_roster(path) == roster
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(FileExistsError):
        write_roster(path, roster)
    write_roster(path, Roster(list(roster)[:2]), overwrite=True)
    assert len(load_roster(path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out.toml"]


def test_roster_constructor_validates_members():
    with pytest.raises(InvalidRoster, match="bad peer_id"):
        Roster([Member("a", "12D3KooWnope", ("/ip4/1.2.3.4/tcp/1",))])
    with pytest.raises(InvalidRoster, match="no members"):
        Roster([])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[member]\n", "not valid TOML"),
        ("", "expected one or more \\[\\[member\\]\\] tables"),
        ("member = 3\n", "expected one or more"),
        ("title = 'x'\n" + GOOD, "unknown top-level key\\(s\\) title"),
        (
            GOOD + member_toml("alpha", IDS[3], "/ip4/127.0.0.1/tcp/9009"),
            "name 'alpha' appears twice",
        ),
        (
            GOOD + member_toml("omega", IDS[0], "/ip4/127.0.0.1/tcp/9009"),
            "members 'omega' and 'zeta' have the same peer_id",
        ),
        (
            GOOD + member_toml("omega", IDS[3], "/ip4/127.0.0.1/tcp/9001"),
            "members 'alpha' and 'omega' share the address /ip4/127.0.0.1/tcp/9001",
        ),
        (member_toml("a", "12D3KooWxyz", "/ip4/1.2.3.4/tcp/1"), "member #1 \\('a'\\): bad peer_id"),
        (
            GOOD + member_toml("b", IDS[3], "/ip4/1.2.3.4/tcp/99999"),
            "member #4 \\('b'\\): bad address: .*not a port number",
        ),
        (
            member_toml("a", IDS[0], f"/ip4/1.2.3.4/tcp/1/p2p/{IDS[1]}"),
            "names a different peer ID",
        ),
        (member_toml("a", IDS[0]), "addresses must be a non-empty list"),
        (member_toml("a", IDS[0], "/ip4/1.2.3.4/tcp/1", "/ip4/1.2.3.4/tcp/1"), "listed twice"),
        (member_toml("St Mary's", IDS[0], "/ip4/1.2.3.4/tcp/1"), "name must be 1-64 letters"),
        (
            '[[member]]\nname = "a"\npeer_id = "x"\n',
            "member #1 \\('a'\\): missing key\\(s\\) addresses",
        ),
        (
            member_toml("a", IDS[0], "/ip4/1.2.3.4/tcp/1").replace(
                "[[member]]", "[[member]]\nport = 1"
            ),
            "unknown key\\(s\\) port",
        ),
        ('[[member]]\nname = 1\npeer_id = "x"\naddresses = []\n', "member #1: name must be"),
        (
            '[[member]]\nname = "a"\npeer_id = 7\naddresses = ["/ip4/1.2.3.4/tcp/1"]\n',
            "peer_id must be a string",
        ),
    ],
)
def test_roster_errors_name_file_and_member(tmp_path, text, reason):
    path = tmp_path / "consortium.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=reason) as err:
        load_roster(path)
    assert str(err.value).startswith(f"{path}: ")


def test_missing_roster_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_roster(tmp_path / "nope.toml")
