"""What `p2pfl roster propose|sign|merge|verify` do: change the consortium by signed roster
versions (the rules are p2pfl.protocol.roster_chain's; argparse lives in cli.py).

Each command returns the lines to print; bad input is a UserError naming the file or flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.files.keys import load_key, passphrase_from_env
from p2pfl.files.roster_file import load_version, stored_versions, write_version
from p2pfl.protocol import roster_chain as rc
from p2pfl.protocol.identity import Ed25519PrivateKey, peer_id_of
from p2pfl.protocol.roster import InvalidRoster, Member, Roster
from p2pfl.protocol.roster_chain import RosterVersion

CHANGES = {"add": "NAME PEER_ID ADDR...", "remove": "NAME", "rotate": "NAME NEW_PEER_ID",
           "address": "NAME ADDR..."}  # what `propose` changes, and the values each takes


@dataclass(frozen=True)
class Change:
    """One change a proposal makes: `kind` is a key of CHANGES, `values` its command-line values."""

    kind: str
    values: tuple[str, ...]


def propose(roster: Path, change: Change, effective_round: int, out: Path, threshold: int | None = None,
            key: Path | None = None, passphrase_env: str | None = None) -> list[str]:
    """Write version n+1 of the roster file `roster` (version n) with `change`, unsigned, or
    signed by `key` (a member of version n). Returns its digest, what changes and who must sign."""
    current = load_version(roster)
    signer = _key(key, passphrase_env) if key is not None else None
    if signer is not None and current.roster.by_peer_id(peer_id_of(signer)) is None:
        raise UserError(_not_member(key, signer, current, roster))
    if effective_round <= current.effective_round:
        raise UserError(f"--effective-round {effective_round} must be after round {current.effective_round}, "
                        f"when version {current.version} ({roster}) took effect")
    members = _changed(current.roster, change)
    if threshold is not None and not 0 <= threshold <= len(members):
        raise UserError(f"--threshold must be 0 (a majority) to {len(members)} (the members of version "
                        f"{current.version + 1}), got {threshold}")
    if threshold is None and current.threshold > len(members):
        raise UserError(f"version {current.version}'s threshold {current.threshold} is more than the "
                        f"{len(members)} members of version {current.version + 1}: give --threshold")
    try:
        proposal = rc.next_version(current, members, effective_round, threshold)
    except InvalidRoster as exc:
        raise UserError(f"--{change.kind}: {exc}") from None
    if signer is not None:
        proposal = proposal.signed(signer)
    _write(out, proposal, overwrite=False)
    lines = [f"wrote {out}: roster version {proposal.version}, from round {effective_round}",
             f"digest {proposal.digest()}", *changes(current, proposal), _needs(current)]
    if signer is not None:
        lines.append(_tally(current, proposal, out))
    return lines


def sign(path: Path, key: Path, passphrase_env: str | None = None, previous: Path | None = None) -> list[str]:
    """Add `key`'s signature to the version in `path`, in place. With `previous` (the version it
    follows), first refuse a key that is not a member of it and a file that does not follow it;
    then count the signatures."""
    version = load_version(path)
    if version.version == 1:
        raise UserError(f"{path} is version 1, the roster every member started from: there is nothing "
                        "to sign (sign a version written by `p2pfl roster propose`)")
    signer = _key(key, passphrase_env)
    before = load_version(previous) if previous is not None else None
    if before is not None:
        if before.roster.by_peer_id(peer_id_of(signer)) is None:
            raise UserError(_not_member(key, signer, before, previous))
        with _refused():
            rc.check_follows(before, version, str(path))
    signed = version.signed(signer)
    # with --previous: what it changes and the count, found before writing (a bad signature refuses)
    report = [*changes(before, signed), _tally(before, signed, path)] if before is not None else [
        f"signatures: {', '.join(_name(p, signed) for p in signed.signers())} "
        "(give --previous to check them and count what is needed)"]
    _write(path, signed, overwrite=True)
    name = _name(peer_id_of(signer), before or signed)
    return [f"signed {path} (roster version {signed.version}, digest {signed.digest()[:16]}) as {name}",
            *report]


def merge(paths: list[Path], out: Path) -> list[str]:
    """Write to `out` one version with every signature of `paths`, signed copies of the same
    proposal (identical content, every signature verifying over it)."""
    versions = [load_version(p) for p in paths]
    first = versions[0]
    signatures: dict[str, rc.Signature] = {}
    for path, v in zip(paths, versions, strict=True):
        if v.content() != first.content():
            raise UserError(f"{path} differs from {paths[0]} ({_difference(first, v)}): "
                            "not a copy of the same proposal")
        bad = rc.unverified(v)
        if bad:
            raise UserError(f"{path}: the signature of {_name(bad[0], v)} does not verify over "
                            f"roster version {v.version}")
        for s in v.signatures:
            signatures.setdefault(s.peer_id, s)
    merged = replace(first, signatures=tuple(signatures.values()))
    _write(out, merged, overwrite=Path(out) in {Path(p) for p in paths})
    who = ", ".join(_name(p, merged) for p in merged.signers()) or "no one"
    return [f"wrote {out}: roster version {merged.version}, digest {merged.digest()[:16]}, "
            f"{len(signatures)} signatures ({who})"]


def verify(paths: list[Path]) -> list[str]:
    """Check that each file's version follows the one before (the first is trusted as given);
    one line per version, then "chain ok"."""
    return verify_versions([(str(p), load_version(p)) for p in paths])


def verify_versions(chain: list[tuple[str, RosterVersion]]) -> list[str]:
    """`verify` of (where, version) pairs."""
    lines = []
    for i, (where, v) in enumerate(chain):
        with _refused():
            if i == 0:
                v.check(where)
                signers = "trusted as given"
            else:
                before = chain[i - 1][1]
                rc.check_successor(before, v, where)
                names = ", ".join(rc.valid_signers(before, v, where))
                signers = f"signed by {names} (needs {before.needed()})"
        lines.append(f"{where}: version {v.version}, from round {v.effective_round}, {len(v.roster)} "
                     f"members, {signers}, digest {v.digest()}")
    return [*lines, f"chain ok: {len(chain)} version(s), now version {chain[-1][1].version}"]


def node_chain(config: Path) -> list[tuple[str, RosterVersion]]:
    """The chain a node holds: its configured roster (node.roster), then the versions after it
    that it accepted, STATE_DIR/rosters/v{N}.toml. A stored version from before the configured
    one is left out; one with the same number must be the same version."""
    from p2pfl.settings.load import node_settings

    settings = node_settings(Path(config))
    roster = settings.path(settings.node.roster)
    anchor = load_version(roster)
    chain = [(str(roster), anchor)]
    for path in stored_versions(settings.path(settings.node.state_dir)):
        v = load_version(path)
        if path.name != f"v{v.version}.toml":
            raise UserError(f"{path} holds roster version {v.version}, not the one its name says")
        if v.version == anchor.version and v.content() != anchor.content():
            raise UserError(f"{path} differs from version {v.version} in {roster} ({_difference(anchor, v)})")
        if v.version > anchor.version:
            chain.append((str(path), v))
    return chain


def changes(before: RosterVersion, after: RosterVersion) -> list[str]:
    """One line per change from `before` to `after`: members added, removed, with a new key or
    new addresses, and the threshold."""
    lines = []
    old = {m.name: m for m in before.roster}
    for m in after.roster:
        was = old.get(m.name)
        if was is None:
            lines.append(f"adds {m.name} ({m.peer_id}) at {' '.join(m.addresses)}")
            continue
        if was.peer_id != m.peer_id:
            lines.append(f"rotates {m.name}'s key from {was.peer_id} to {m.peer_id}")
        rotated = tuple(a.replace(f"/p2p/{was.peer_id}", f"/p2p/{m.peer_id}") for a in was.addresses)
        if m.addresses != rotated:
            lines.append(f"moves {m.name} to {' '.join(m.addresses)}")
    lines += [f"removes {name}" for name in old if after.roster.by_name(name) is None]
    if after.threshold != before.threshold:
        lines.append(f"sets the threshold for the version after it to {_threshold(after)} "
                     f"(was: {_threshold(before)})")
    return lines


def _changed(roster: Roster, change: Change) -> Roster:
    """`roster` with `change` made; UserError naming the flag."""
    values, flag = change.values, f"--{change.kind}"
    least = len(CHANGES[change.kind].split())
    if len(values) < least:
        raise UserError(f"{flag} takes {CHANGES[change.kind]}, got {' '.join(values) or 'nothing'}")
    try:
        if change.kind == "add":
            return rc.added(roster, Member(values[0], values[1], tuple(values[2:])))
        if change.kind == "remove":
            return rc.removed(roster, values[0])
        if change.kind == "rotate":
            return rc.rotated(roster, values[0], values[1])
        return rc.readdressed(roster, values[0], list(values[1:]))
    except InvalidRoster as exc:
        raise UserError(f"{flag}: {exc}") from None


def _key(path: Path, passphrase_env: str | None) -> Ed25519PrivateKey:
    return load_key(Path(path), passphrase_from_env(passphrase_env, Path(path)))


def _not_member(key: Path | None, signer: Ed25519PrivateKey, version: RosterVersion,
                where: Path | None) -> str:
    return (f"key file {key} ({peer_id_of(signer)}) is not a member of roster version {version.version} "
            f"({where}): only its members may sign the version after it")


def _needs(current: RosterVersion) -> str:
    names = ", ".join(m.name for m in current.roster)
    return (f"needs the signatures of {current.needed()} of version {current.version}'s "
            f"{len(current.roster)} members: {names}")


def _tally(before: RosterVersion, version: RosterVersion, path: Path) -> str:
    """Who of `before`'s members signed `version`, and how many more it needs."""
    with _refused():
        valid = rc.valid_signers(before, version, str(path))
    more = before.needed() - len(valid)
    status = f"{more} more needed" if more > 0 else "enough: merge the signed copies, then verify"
    return (f"signed by {len(valid)} of version {before.version}'s {len(before.roster)} members "
            f"({', '.join(valid)}), needs {before.needed()}: {status}")


@contextmanager
def _refused() -> Iterator[None]:
    """A roster_chain check's InvalidRoster as a UserError (its line names the file)."""
    try:
        yield
    except InvalidRoster as exc:
        raise UserError(str(exc)) from None


def _write(path: Path, version: RosterVersion, overwrite: bool) -> None:
    try:
        write_version(Path(path), version, overwrite)
    except FileExistsError:
        raise UserError(f"{path} exists; not overwriting it") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _name(peer_id: str, version: RosterVersion) -> str:
    member = version.roster.by_peer_id(peer_id)
    return member.name if member is not None else peer_id


def _threshold(v: RosterVersion) -> str:
    majority = "a majority, " if v.threshold == 0 else ""
    return f"{majority}{v.needed()} of {len(v.roster)}"


def _difference(a: RosterVersion, b: RosterVersion) -> str:
    for field in ("version", "threshold", "effective_round", "previous"):
        if getattr(a, field) != getattr(b, field):
            return f"{field} {getattr(b, field)!r}, not {getattr(a, field)!r}"
    return "other members"
