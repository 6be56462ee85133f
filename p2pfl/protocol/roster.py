"""The consortium roster: who the members are, their peer IDs and where to reach them.

Every member holds the same TOML file:

    [[member]]
    name = "st-marys"
    peer_id = "12D3KooW..."
    addresses = ["/ip4/10.0.0.5/tcp/9001"]

A member that cannot accept inbound connections is reached through relay members: its
addresses are circuit addresses, each naming a member that is itself reached directly:

    addresses = ["/ip4/10.0.0.5/tcp/9001/p2p/<relay member's peer_id>/p2p-circuit"]

Members are numbered in name order, so every node computes the same node indices.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from p2pfl.protocol.identity import InvalidPeerId, public_key_from_peer_id
from p2pfl.protocol.multiaddr import InvalidMultiaddr, check_circuit, check_dialable_tcp, is_circuit

MEMBER_KEYS = ("name", "peer_id", "addresses")
VERSION_KEYS = ("version", "threshold", "effective_round", "previous", "signature")  # roster_chain
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidRoster(Exception):
    """Roster text or members that break the rules above; the text names the source and member."""


@dataclass(frozen=True)
class Member:
    """One consortium member."""

    name: str
    peer_id: str
    addresses: tuple[str, ...]

    @property
    def relayed(self) -> bool:
        """True if it is reached only through relay members (its addresses are circuit ones)."""
        return any(is_circuit(a) for a in self.addresses)

    @property
    def relays(self) -> tuple[str, ...]:
        """The peer IDs of the relay members its circuit addresses go through, in address order."""
        return tuple(check_circuit(a)[0][-1][1] for a in self.addresses if is_circuit(a))


class Roster:
    """The validated members, sorted by name; a member's position is its node index."""

    def __init__(self, members: Iterable[Member], source: str = "roster") -> None:
        """Check for duplicate names, peer IDs and addresses (InvalidRoster naming `source`)."""
        self.members: tuple[Member, ...] = tuple(sorted(members, key=lambda m: m.name))
        if not self.members:
            raise InvalidRoster(f"{source}: the roster has no members")
        self._by_name: dict[str, Member] = {}
        self._by_peer_id: dict[str, int] = {}
        owner_of_address: dict[str, str] = {}
        for index, m in enumerate(self.members):
            _check_fields(m.name, m.peer_id, list(m.addresses), f"{source}: member {m.name!r}")
            if m.name in self._by_name:
                raise InvalidRoster(f"{source}: member name {m.name!r} appears twice")
            if m.peer_id in self._by_peer_id:
                other = self.members[self._by_peer_id[m.peer_id]].name
                raise InvalidRoster(
                    f"{source}: members {other!r} and {m.name!r} have the same peer_id {m.peer_id}"
                )
            self._by_name[m.name] = m
            self._by_peer_id[m.peer_id] = index
            for addr in (a for a in m.addresses if not is_circuit(a)):  # relays are shared
                host_port = addr.split("/p2p/")[0]
                other = owner_of_address.setdefault(host_port, m.name)
                if other != m.name:
                    raise InvalidRoster(
                        f"{source}: members {other!r} and {m.name!r} share the address {host_port}"
                    )

        for m in self.members:
            for addr in (a for a in m.addresses if is_circuit(a)):
                self._check_relay(m, addr, source)

    def _check_relay(self, m: Member, addr: str, source: str) -> None:
        """A circuit address goes through another member, reached directly at this address."""
        hop, _ = check_circuit(addr)
        where = f"{source}: member {m.name!r}: address {addr!r}"
        relay = self.by_peer_id(hop[-1][1])
        if relay is None:
            raise InvalidRoster(f"{where} goes through {hop[-1][1]}, which is not a member's peer_id")
        if relay.relayed:
            raise InvalidRoster(f"{where} goes through {relay.name!r}, which is itself reached "
                                "through a relay (a relay member needs a direct address)")
        at = "/" + "/".join(f"{p}/{v}" for p, v in hop[:-1])
        if not any(a.split("/p2p/")[0] == at for a in relay.addresses):
            raise InvalidRoster(f"{where} reaches {relay.name!r} at {at}, which is not one of "
                                f"{relay.name!r}'s addresses ({', '.join(relay.addresses)})")

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._by_peer_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Roster) and self.members == other.members

    def __repr__(self) -> str:
        return f"Roster({', '.join(m.name for m in self.members)})"

    @property
    def peer_ids(self) -> tuple[str, ...]:
        """Peer IDs in node-index order."""
        return tuple(m.peer_id for m in self.members)

    def by_peer_id(self, peer_id: str) -> Member | None:
        """The member with this peer ID, or None if it is not in the consortium."""
        index = self._by_peer_id.get(peer_id)
        return None if index is None else self.members[index]

    def by_name(self, name: str) -> Member | None:
        """The member with this name, or None."""
        return self._by_name.get(name)

    def index_of(self, peer_id: str) -> int:
        """The node index of a member (its position in name order); KeyError if absent."""
        return self._by_peer_id[peer_id]


def parse_roster(text: str, source: str = "roster") -> Roster:
    """Validate roster TOML text; InvalidRoster names `source` and the member. The version
    keys and signatures (p2pfl.protocol.roster_chain) are allowed and left out here."""
    return parse_roster_document(text, source)[0]


def parse_roster_document(text: str, source: str = "roster") -> tuple[Roster, dict[str, object]]:
    """The roster and the file's other top-level keys (VERSION_KEYS only)."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise InvalidRoster(f"{source}: not valid TOML: {str(e)[:200]}") from None
    unknown = [k for k in data if k != "member" and k not in VERSION_KEYS]
    if unknown:
        raise InvalidRoster(
            f"{source}: unknown top-level key(s) {', '.join(unknown)} (expected [[member]], "
            f"{', '.join(VERSION_KEYS[:-1])}, [[signature]])"
        )
    raw_members = data.pop("member", None)
    if not isinstance(raw_members, list):
        raise InvalidRoster(f"{source}: expected one or more [[member]] tables")
    members = [_member(raw, i, source) for i, raw in enumerate(raw_members)]
    return Roster(members, source), data


def _member(raw: object, i: int, source: str) -> Member:
    where = f"{source}: member #{i + 1}"
    if not isinstance(raw, dict):
        raise InvalidRoster(f"{where} is not a table")
    name = raw.get("name")
    if isinstance(name, str):
        where = f"{where} ({name!r})"
    missing = [k for k in MEMBER_KEYS if k not in raw]
    if missing:
        raise InvalidRoster(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = [k for k in raw if k not in MEMBER_KEYS]
    if unknown:
        raise InvalidRoster(
            f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(MEMBER_KEYS)})"
        )
    _check_fields(name, raw["peer_id"], raw["addresses"], where)
    return Member(name, raw["peer_id"], tuple(raw["addresses"]))


def _check_fields(name: object, peer_id: object, addresses: object, where: str) -> None:
    """Check one member's name, peer ID and addresses; InvalidRoster starting with `where`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRoster(
            f"{where}: name must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if not isinstance(peer_id, str):
        raise InvalidRoster(f"{where}: peer_id must be a string")
    try:
        public_key_from_peer_id(peer_id)
    except InvalidPeerId as e:
        raise InvalidRoster(f"{where}: bad peer_id: {e}") from None
    if not isinstance(addresses, list) or not addresses:
        raise InvalidRoster(f"{where}: addresses must be a non-empty list of multiaddr strings")
    for addr in addresses:
        if not isinstance(addr, str):
            raise InvalidRoster(f"{where}: address {addr!r} is not a string")
        try:
            if is_circuit(addr):
                hop, parts = check_circuit(addr)
                if hop[-1][1] == peer_id:
                    raise InvalidRoster(f"{where}: address {addr!r} goes through the member itself")
            else:
                parts = check_dialable_tcp(addr)
        except InvalidMultiaddr as e:
            raise InvalidRoster(f"{where}: bad address: {e}") from None
        if parts and parts[-1][0] == "p2p" and parts[-1][1] != peer_id:
            raise InvalidRoster(f"{where}: address {addr!r} names a different peer ID than peer_id")
    if len(set(addresses)) != len(addresses):
        raise InvalidRoster(f"{where}: an address is listed twice")
    if len({is_circuit(a) for a in addresses}) > 1:
        raise InvalidRoster(f"{where}: addresses are either all direct or all circuit addresses "
                            "through relay members (/p2p-circuit), not both")


def roster_to_toml(roster: Roster, head: list[str] | None = None, tail: list[str] | None = None) -> str:
    """The TOML text of a roster, members in name order, after the lines `head` (top-level
    keys) and before `tail` (tables after the members)."""
    lines = ["# p2pfl consortium roster: every member holds the same file.", "", *(head or [])]
    for m in roster:
        lines += [
            "[[member]]",
            f"name = {toml_string(m.name)}",
            f"peer_id = {toml_string(m.peer_id)}",
            f"addresses = [{', '.join(toml_string(a) for a in m.addresses)}]",
            "",
        ]
    return "\n".join([*lines, *(tail or [])])


def toml_string(text: str) -> str:
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)
