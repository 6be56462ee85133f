"""Which consortium and run an update belongs to: a digest of the settings all members share.

Every update carries, under its signature, the ID of the sender's consortium and a short digest
of each section it was built from (see codec.py), so a member of two consortia cannot have an
update captured in one replayed into the other, and a node whose settings drifted from the
others' is told which section differs. Pure: no I/O.

Canonical form of a section (what its digest covers): the value as JSON with keys sorted, no
spaces (`,` and `:` separators), ASCII only (other characters as \\uXXXX escapes), ints in
decimal, floats as Python's repr (`0.1`, `1e-05`, `-0.0`; NaN and infinities as `NaN`,
`Infinity`, `-Infinity`), `true`, `false`, `null`. Only dicts with str keys, lists, tuples (as
lists), str, int, float, bool and None are accepted. 1 and 1.0 are different values: callers
normalise types before.

    section digest = sha256(canonical JSON, UTF-8)
    consortium id  = sha256(b"p2pfl consortium v1\\0" + for each section in name (code point) order:
                            name (UTF-8) + b"\\0" + section digest)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from p2pfl.protocol.messages import InvalidMessage, ModelUpdate, ProtocolViolation
from p2pfl.protocol.wording import a_type, short

ID_CONTEXT = b"p2pfl consortium v1\0"
DIGEST_SIZE = 32
SHORT_DIGEST_SIZE = 8  # what an update's header carries per section
MAX_SECTIONS = 16
MAX_SECTION_NAME = 32
SECTION_NAME = re.compile(rf"[a-z_]{{1,{MAX_SECTION_NAME}}}")
SHORT_ID = 8  # hex characters of an ID shown in messages


@dataclass(frozen=True)
class Consortium:
    """A consortium's ID and the SHA-256 of each section it was derived from (see module doc)."""

    id: bytes
    sections: dict[str, bytes] = field(hash=False)

    def __post_init__(self) -> None:
        try:
            check_sections(self.sections, DIGEST_SIZE)
        except InvalidMessage as e:
            raise ValueError(f"not a valid consortium: {e}") from None
        object.__setattr__(self, "sections", dict(self.sections))  # a copy: the caller's may change
        if self.id != consortium_id(self.sections):
            raise ValueError("not a valid consortium: its id is not the digest of its sections")

    def short_sections(self) -> dict[str, bytes]:
        """Section name -> first 8 bytes of its digest, in name order, as an update's header has."""
        return {name: self.sections[name][:SHORT_DIGEST_SIZE] for name in sorted(self.sections)}


def consortium_of(sections: Mapping[str, object]) -> Consortium:
    """The Consortium of `sections` (name -> JSON-able value); ValueError if one cannot be hashed."""
    digests = {name: section_digest(name, value) for name, value in sections.items()}
    return Consortium(consortium_id(digests), digests)


def section_digest(name: str, value: object) -> bytes:
    """SHA-256 of the canonical JSON of one section's value."""
    return hashlib.sha256(canonical_json(value, f"section {name!r}").encode()).digest()


def canonical_json(value: object, where: str = "value") -> str:
    """The canonical JSON text of `value` (see module doc); ValueError names a bad part."""
    plain = _plain(value, where)
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def consortium_id(digests: Mapping[str, bytes]) -> bytes:
    """sha256 of the context and each (name, NUL, digest) in name order."""
    h = hashlib.sha256(ID_CONTEXT)
    for name in sorted(digests):
        h.update(name.encode() + b"\0" + digests[name])
    return h.digest()


def check_sections(sections: object, digest_size: int) -> None:
    """Raise InvalidMessage unless `sections` maps at most 16 names [a-z_]{1,32} to digests."""
    if type(sections) is not dict:
        raise InvalidMessage(f"sections is {a_type(sections)}, not a map")
    if len(sections) > MAX_SECTIONS:
        raise InvalidMessage(f"sections has {len(sections)} entries (at most {MAX_SECTIONS})")
    for name, digest in sections.items():
        if type(name) is not str or not SECTION_NAME.fullmatch(name):
            raise InvalidMessage(
                f"section name {short(name)} is not 1 to {MAX_SECTION_NAME} characters of a-z and _"
            )
        if type(digest) is not bytes or len(digest) != digest_size:
            raise InvalidMessage(f"section {name!r} digest {short(digest)} is not {digest_size} bytes")


def check_consortium(update: ModelUpdate, mine: Consortium) -> None:
    """Raise ProtocolViolation, naming the sections that differ, unless `update` is of `mine`.

    Called on a decoded update, whose signature verified: the sender is of another consortium."""
    reason = differences(update.consortium, update.sections, mine)
    if reason is not None:
        raise ProtocolViolation(reason)


MAX_NAMED_KEYS = 6  # differing keys named in one line
SHOWN = 80  # characters of a value shown whole (p2pfl.protocol.wording.short)


def differences(their_id: bytes, their_sections: Mapping[str, bytes], mine: Consortium,
                their_plan: Mapping[str, object] | None = None,
                my_plan: Mapping[str, object] | None = None) -> str | None:
    """None if `their_id` is `mine`; else one line naming the sections that differ (digests
    full or short: compared on their first SHORT_DIGEST_SIZE bytes) or, given both plans (the
    sections' values), the keys that differ with both values."""
    if their_id == mine.id:
        return None
    theirs = {name: digest[:SHORT_DIGEST_SIZE] for name, digest in their_sections.items()}
    ours = mine.short_sections()
    changed = sorted(n for n in ours.keys() & theirs.keys() if ours[n] != theirs[n])
    keys = key_differences(my_plan, their_plan, changed) if my_plan and their_plan else []
    if keys:
        more = len(keys) - MAX_NAMED_KEYS
        parts = ["; ".join(keys[:MAX_NAMED_KEYS]) + (f"; and {more} more" if more > 0 else "")]
    else:
        parts = [f"different settings in {', '.join(changed)}"] if changed else []
    if only_theirs := sorted(theirs.keys() - ours.keys()):
        parts.append(f"sections only the sender has: {', '.join(only_theirs)}")
    if only_ours := sorted(ours.keys() - theirs.keys()):
        parts.append(f"sections only this node has: {', '.join(only_ours)}")
    if not parts:  # the short digests all match, the IDs do not: the header contradicts itself
        parts.append("every section digest the sender lists matches this node's")
    return (f"consortium {their_id.hex()[:SHORT_ID]} differs from this node's "
            f"{mine.id.hex()[:SHORT_ID]}: {'; '.join(parts)} "
            "(the members' rosters or settings are not the same)")


def key_differences(mine: Mapping[str, object], theirs: Mapping[str, object],
                    sections: list[str]) -> list[str]:
    """"training.lr: 0.05 here, 0.1 at the peer" for each key of `sections` whose values differ
    (a section that is not a table, e.g. the roster, is named as a whole)."""
    out = []
    for name in sections:
        a, b = mine.get(name), theirs.get(name)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                if key not in a or key not in b or canonical_json(a[key]) != canonical_json(b[key]):
                    out.append(_value_difference(f"{name}.{key}", a, b, key))
        elif name == "roster" and isinstance(a, list) and isinstance(b, list):
            out.append(_roster_difference(a, b))
        else:
            out.append(f"{name}: {short(a)} here, {short(b)} at the peer")
    return out


def _value_difference(where: str, a: Mapping[str, object], b: Mapping[str, object], key: str) -> str:
    """One key's two values; of two lists too long to show, the first item that differs (a
    feature schema)."""
    x, y = a.get(key), b.get(key)
    long = len(repr(x)) > SHOWN or len(repr(y)) > SHOWN
    if long and isinstance(x, list) and isinstance(y, list) and key in a and key in b:
        for i, (u, v) in enumerate(zip(x, y, strict=False)):
            if canonical_json(u) != canonical_json(v):
                return f"{where}[{i}]: {short(u)} here, {short(v)} at the peer"
        return f"{where}: {len(x)} items here, {len(y)} at the peer"
    return f"{where}: {_shown(a, key)} here, {_shown(b, key)} at the peer"


def _shown(table: Mapping[str, object], key: str) -> str:
    return short(table[key]) if key in table else "not set"


def _roster_difference(a: list, b: list) -> str:
    ours, theirs = {short(m) for m in a}, {short(m) for m in b}
    parts = [f"members only here: {', '.join(sorted(ours - theirs))}"] if ours - theirs else []
    if theirs - ours:
        parts.append(f"members only at the peer: {', '.join(sorted(theirs - ours))}")
    return "roster: " + ("; ".join(parts) if parts else "the same members in another order")


def _plain(value: object, where: str) -> object:
    """`value` as plain dicts and lists; ValueError naming the first part with no JSON form."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) in (list, tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{where} has the key {key!r}: section keys must be strings")
            out[key] = _plain(item, f"{where}.{key}")
        return out
    raise ValueError(
        f"{where} is {a_type(value)}; a consortium section holds only dicts, lists, str, int, "
        "float, bool and None"
    )
