"""Signed roster versions: the membership changes with no one in charge.

Version 1 is the roster each hospital was given (its trust anchor). Version n+1 names the
digest of version n (`previous`), the round it takes effect (`effective_round`), its members,
and its own admission `threshold`; it is valid only with the signatures of at least
`needed()` members of version n over its content. A removed member's signature does not count
for what follows its removal, and a signature by anyone who is not a member of version n makes
the version invalid. Pure: no I/O.

    content = canonical JSON of {version, threshold, effective_round, previous,
                                 members: [[name, peer_id, [addresses]], ...] in name order}
    signature = Ed25519 over CONTEXT + content, by a member of the previous version
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from p2pfl.protocol.consortium import canonical_json
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    InvalidPeerId,
    peer_id_of,
    public_key_from_peer_id,
    sign,
    verify,
)
from p2pfl.protocol.roster import (
    InvalidRoster,
    Member,
    Roster,
    parse_roster_document,
    roster_to_toml,
    toml_string,
)

CONTEXT = b"p2pfl roster version v1\0"
SIGNATURE_SIZE = 64
MAX_TEXT = 256 * 1024  # bytes of a roster version's text, checked before it is parsed
SIGNATURE_KEYS = ("peer_id", "value")


@dataclass(frozen=True)
class Signature:
    """One member's signature over a version's content."""

    peer_id: str
    value: bytes


@dataclass(frozen=True)
class RosterVersion:
    """One version of the roster and the signatures it carries."""

    roster: Roster
    version: int = 1
    threshold: int = 0  # signatures of this version's members the next one needs; 0: a majority
    effective_round: int = 0  # the first round trained with these members
    previous: str = ""  # hex SHA-256 of the previous version's content ("" for version 1)
    signatures: tuple[Signature, ...] = ()

    def content(self) -> bytes:
        """The bytes members sign (everything but the signatures)."""
        return canonical_json({
            "version": self.version, "threshold": self.threshold,
            "effective_round": self.effective_round, "previous": self.previous,
            "members": [[m.name, m.peer_id, list(m.addresses)] for m in self.roster.members]}).encode()

    def digest(self) -> str:
        """Hex SHA-256 of the content: what the next version names as `previous`."""
        return hashlib.sha256(self.content()).hexdigest()

    def needed(self) -> int:
        """Signatures of this version's members that the next version needs."""
        return self.threshold or len(self.roster) // 2 + 1

    def signed(self, key: Ed25519PrivateKey) -> RosterVersion:
        """This version with `key`'s signature added (replacing an earlier one by the same key)."""
        signer = peer_id_of(key)
        value = sign(key, CONTEXT + self.content())
        kept = tuple(s for s in self.signatures if s.peer_id != signer)
        return replace(self, signatures=(*kept, Signature(signer, value)))

    def signers(self) -> list[str]:
        """Peer IDs of the signatures, in order."""
        return [s.peer_id for s in self.signatures]

    def check(self, where: str = "roster") -> None:
        """Its own fields (not its signatures: see `check_successor`); InvalidRoster."""
        if self.version < 1:
            raise InvalidRoster(f"{where}: version must be 1 or more, got {self.version}")
        if not 0 <= self.threshold <= len(self.roster):
            raise InvalidRoster(f"{where}: threshold must be 0 (a majority) to {len(self.roster)} "
                                f"(the members), got {self.threshold}")
        if self.effective_round < 0:
            raise InvalidRoster(f"{where}: effective_round must be 0 or more, got {self.effective_round}")
        if (self.version == 1) != (self.previous == ""):
            raise InvalidRoster(f"{where}: previous must be the digest of version {self.version - 1}"
                                if self.version > 1 else f"{where}: version 1 has no previous")
        for s in self.signatures:
            if len(s.value) != SIGNATURE_SIZE:
                raise InvalidRoster(f"{where}: the signature of {s.peer_id} is {len(s.value)} bytes, "
                                    f"not {SIGNATURE_SIZE}")


def check_successor(current: RosterVersion, new: RosterVersion, where: str = "roster") -> None:
    """That `new` may follow `current`: the next number, based on it, later, and signed by at
    least `current.needed()` of its members (and by no one else). InvalidRoster, one line."""
    check_follows(current, new, where)
    valid = valid_signers(current, new, where)
    if len(valid) < current.needed():
        who = ", ".join(valid) or "no member"
        raise InvalidRoster(f"{where}: version {new.version} is signed by {len(valid)} of version "
                            f"{current.version}'s {len(current.roster)} members ({who}); it needs "
                            f"{current.needed()}")


def check_follows(current: RosterVersion, new: RosterVersion, where: str = "roster") -> None:
    """`check_successor` without the signatures: the next number, based on `current`, later."""
    new.check(where)
    if new.version != current.version + 1:
        raise InvalidRoster(f"{where}: version {new.version} does not follow version {current.version} "
                            f"(expected {current.version + 1})")
    if new.previous != current.digest():
        raise InvalidRoster(f"{where}: version {new.version} is not based on the version "
                            f"{current.version} held here (previous {new.previous[:16]}, "
                            f"expected {current.digest()[:16]})")
    if new.effective_round <= current.effective_round:
        raise InvalidRoster(f"{where}: version {new.version} takes effect at round {new.effective_round}, "
                            f"not after version {current.version}'s round {current.effective_round}")


def valid_signers(current: RosterVersion, new: RosterVersion, where: str = "roster") -> list[str]:
    """Names of `current`'s members whose signatures on `new` verify, each once, in order; a
    signature by anyone else, or one that does not verify, is InvalidRoster."""
    content = CONTEXT + new.content()  # once: a peer may repeat a signature many times
    valid: list[str] = []
    for s in new.signatures:
        member = current.roster.by_peer_id(s.peer_id)
        if member is None:
            raise InvalidRoster(f"{where}: version {new.version} is signed by {s.peer_id}, "
                                f"not a member of version {current.version}")
        if not _verifies(s, content):
            raise InvalidRoster(f"{where}: the signature of {member.name} does not verify over "
                                f"version {new.version}")
        if member.name not in valid:
            valid.append(member.name)
    return valid


def unverified(version: RosterVersion) -> list[str]:
    """Peer IDs whose signatures on `version` do not verify over its content (whoever they are)."""
    content = CONTEXT + version.content()
    return [s.peer_id for s in version.signatures if not _verifies(s, content)]


def _verifies(signature: Signature, content: bytes) -> bool:
    try:
        public = public_key_from_peer_id(signature.peer_id)
    except InvalidPeerId:
        return False
    return verify(public, content, signature.value)


def check_chain(versions: list[RosterVersion], where: str = "roster") -> None:
    """Every version follows the one before (the first is trusted as given)."""
    versions[0].check(where)
    for current, new in zip(versions, versions[1:], strict=False):
        check_successor(current, new, where)


def next_version(current: RosterVersion, roster: Roster, effective_round: int,
                 threshold: int | None = None) -> RosterVersion:
    """An unsigned proposal of version n+1 with `roster`, taking effect at `effective_round`;
    the threshold stays as it was unless given."""
    proposal = RosterVersion(roster, current.version + 1,
                             current.threshold if threshold is None else threshold,
                             effective_round, current.digest())
    proposal.check()
    if roster == current.roster:
        raise InvalidRoster(f"version {proposal.version} would not change the members")
    return proposal


# -- text: roster.toml with the version keys and [[signature]] tables ----------------------------

def parse_version(text: str, source: str = "roster") -> RosterVersion:
    """A roster file's version (a file without version keys is version 1); InvalidRoster
    names `source`. The size is checked first: the text may come from a peer."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT:
        raise InvalidRoster(f"{source}: more than {MAX_TEXT} bytes")
    roster, head = parse_roster_document(text, source)
    numbers = {}
    for key, default in (("version", 1), ("threshold", 0), ("effective_round", 0)):
        value = head.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRoster(f"{source}: {key} must be a whole number, got {value!r}")
        numbers[key] = value
    previous = head.get("previous", "")
    if not isinstance(previous, str) or (previous and not _is_digest(previous)):
        raise InvalidRoster(f"{source}: previous must be a hex SHA-256 digest (64 characters)")
    raw = head.get("signature", [])
    if not isinstance(raw, list):
        raise InvalidRoster(f"{source}: signature must be [[signature]] tables")
    version = RosterVersion(roster, previous=previous, signatures=tuple(
        _signature(entry, i, source) for i, entry in enumerate(raw)), **numbers)
    version.check(source)
    return version


def version_to_toml(v: RosterVersion) -> str:
    """The text of a roster version, as `parse_version` reads it."""
    head = [f"version = {v.version}",
            f"threshold = {v.threshold}  # signatures of these members the next version needs; 0: a majority",
            f"effective_round = {v.effective_round}"]
    if v.previous:
        head.append(f"previous = {toml_string(v.previous)}")
    tail = []
    for s in v.signatures:
        tail += ["[[signature]]", f"peer_id = {toml_string(s.peer_id)}",
                 f"value = {toml_string(s.value.hex())}", ""]
    return roster_to_toml(v.roster, head=[*head, ""], tail=tail)


def _signature(entry: object, i: int, source: str) -> Signature:
    where = f"{source}: signature #{i + 1}"
    if not isinstance(entry, dict) or sorted(entry) != sorted(SIGNATURE_KEYS):
        raise InvalidRoster(f"{where}: must have exactly the keys {', '.join(SIGNATURE_KEYS)}")
    peer, value = entry["peer_id"], entry["value"]
    if not isinstance(peer, str) or not isinstance(value, str):
        raise InvalidRoster(f"{where}: peer_id and value must be strings")
    try:
        public_key_from_peer_id(peer)
        raw = bytes.fromhex(value)
    except InvalidPeerId as exc:
        raise InvalidRoster(f"{where}: bad peer_id: {exc}") from None
    except ValueError:
        raise InvalidRoster(f"{where}: value must be hex") from None
    return Signature(peer, raw)


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


# -- the changes `p2pfl roster propose` makes --------------------------------------------------

def added(roster: Roster, member: Member) -> Roster:
    if roster.by_name(member.name) is not None:
        raise InvalidRoster(f"{member.name!r} is already a member")
    return Roster([*roster.members, member], "the proposal")


def removed(roster: Roster, name: str) -> Roster:
    _member(roster, name)
    if len(roster) == 1:
        raise InvalidRoster(f"{name!r} is the only member")
    return Roster([m for m in roster.members if m.name != name], "the proposal")


def rotated(roster: Roster, name: str, peer_id: str) -> Roster:
    old = _member(roster, name)
    if old.peer_id == peer_id:
        raise InvalidRoster(f"{name!r} already has peer ID {peer_id}")
    addresses = tuple(a.replace(f"/p2p/{old.peer_id}", f"/p2p/{peer_id}") for a in old.addresses)
    return _with(roster, Member(name, peer_id, addresses))


def readdressed(roster: Roster, name: str, addresses: list[str]) -> Roster:
    old = _member(roster, name)
    return _with(roster, Member(name, old.peer_id, tuple(addresses)))


def _member(roster: Roster, name: str) -> Member:
    member = roster.by_name(name)
    if member is None:
        raise InvalidRoster(f"no member {name!r} (members: {', '.join(m.name for m in roster)})")
    return member


def _with(roster: Roster, member: Member) -> Roster:
    return Roster([member if m.name == member.name else m for m in roster.members], "the proposal")
