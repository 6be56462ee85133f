"""Dialling the neighbours as `p2pfl node --check` does (p2pfl.net.preflight), and saying what
happened in words a person can act on.

One outbound-only libp2p host of this node's key (it listens nowhere, so it cannot clash with a
node on this port) dials every given member at once, at its roster addresses, and says hello as
the start quorum does (`quorum.say_hello`, `consortium.differences`). A running member only
answers a hello (`daemon.Node._on_hello`); it does not count it towards its own start quorum.
Each dial and hello is bounded by one timeout. A member the roster reaches through relay members
is dialled through them (p2pfl.net.relay), as the node does. How py-libp2p 0.8.1 reports a failed dial (a
`SwarmDialAllFailedError` whose causes hold the real error) is read in `_cause`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import trio
from libp2p.transport.exceptions import MuxerUpgradeFailure

from p2pfl.net import quorum, transfer
from p2pfl.net.host import HELLO_PROTOCOL, make_host, peer_id, quiet_libp2p_logs
from p2pfl.net.relay import Relaying
from p2pfl.protocol import hello
from p2pfl.protocol.consortium import Consortium, differences
from p2pfl.protocol.identity import Ed25519PrivateKey, peer_id_of
from p2pfl.protocol.messages import InvalidMessage
from p2pfl.protocol.roster import Roster

# py-libp2p 0.8.1 names the peer ID that answered only in these messages' text
_PROVEN = (re.compile(r"remote_peer_id_from_pubkey=(\w+)"), re.compile(r"Peer ID mismatch: .* got (\w+)"))


@dataclass(frozen=True)
class Verdict:
    """What dialling one member found: ok, else why not (`detail`) and what to do (`fix`)."""

    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Dialer:
    """Who dials: this node's key, roster and consortium (with the sections it is derived from)."""

    key: Ed25519PrivateKey
    roster: Roster
    consortium: Consortium
    plan: dict[str, object]


def probe_all(me: Dialer, peers: list[str], timeout: float) -> dict[str, Verdict]:
    """Dial and greet each of `peers` (peer IDs) concurrently; a verdict for each."""
    return trio.run(_probe_all, me, peers, timeout)


async def _probe_all(me: Dialer, peers: list[str], timeout: float) -> dict[str, Verdict]:
    quiet_libp2p_logs()
    host = make_host(me.key, allowed=set(me.roster.peer_ids))
    relaying = Relaying(host, me.roster, peer_id_of(me.key))
    verdicts: dict[str, Verdict] = {}

    async def one(peer: str) -> None:
        verdicts[peer] = await _probe(relaying, me, peer, timeout)

    async with host.run(listen_addrs=[]), trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(one, peer)
    return verdicts


async def _probe(relaying: Relaying, me: Dialer, peer: str, timeout: float) -> Verdict:
    """Connect to `peer` and exchange hellos, all within `timeout` seconds."""
    host = relaying.host
    member = me.roster.by_peer_id(peer)
    where = ", ".join(member.addresses)
    pid, connected = peer_id(peer), None
    timeouts = transfer.Timeouts(connect=timeout, chunk=timeout, ack=timeout)
    mine = hello.pack(me.key, me.consortium, me.plan, hello.Role.HELLO, recipient=peer)
    start = time.monotonic()
    try:
        with trio.fail_after(timeout):
            await relaying.connect(member, timeout)
            connected = time.monotonic()
            raw = await quorum.say_hello(host, pid, mine, timeouts)
    except trio.TooSlowError:
        if connected is None:
            return _unreachable(member.name, where, f"no connection within {timeout:g} s")
        return _no_hello(member.name, f"no hello reply within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - every failed dial is a verdict, said in words
        return _failed(me, member.name, peer, where, exc, connected is not None)
    answered = time.monotonic()
    try:
        theirs = hello.parse(raw, sender=peer, recipient=peer_id_of(me.key), role=hello.Role.REPLY)
    except InvalidMessage as exc:
        return _no_hello(member.name, f"its hello reply is invalid: {exc}")
    reason = differences(theirs.consortium.id, theirs.consortium.sections, me.consortium,
                         theirs.plan, me.plan)
    if reason is not None:
        return Verdict(False, f"plan/roster mismatch: {reason}",
                       f"agree with {member.name} on one plan.toml and one roster.toml: every member "
                       "must hold the same files")
    return Verdict(True, f"same consortium {me.consortium.id.hex()[:16]}; connected in "
                         f"{_ms(connected - start)}, hello round trip {_ms(answered - connected)}")


def _failed(me: Dialer, name: str, peer: str, where: str, exc: BaseException, connected: bool) -> Verdict:
    """The verdict on a dial or hello that raised `exc`."""
    if connected:
        return _no_hello(name, _text(_innermost(exc)))
    proven = _proven_peer(exc)
    if proven is not None:
        other = me.roster.by_peer_id(proven)
        whose = f" (that is {other.name}'s peer ID: are two addresses swapped?)" if other else ""
        return Verdict(False, f"wrong peer ID: the node at {where} is {proven}{whose}, roster.toml "
                              f"says {name} is {peer}",
                       f"fix the peer_id of {name} in roster.toml (`p2pfl id --key` on {name}'s key "
                       "prints it), or its address if another node listens there")
    if any(isinstance(e, MuxerUpgradeFailure) for e in _chain(exc)):
        return Verdict(False, f"{name} at {where} closed the connection right after the handshake: "
                              f"its roster probably lacks this node's peer ID {peer_id_of(me.key)}",
                       "give every member the same roster.toml, with this node in it")
    refused = any(isinstance(e, ConnectionRefusedError) for e in _chain(exc))
    return _unreachable(name, where, "connection refused" if refused else _text(_innermost(exc)))


def _unreachable(name: str, where: str, why: str) -> Verdict:
    return Verdict(False, f"unreachable at {where}: {why}",
                   f"is {name}'s node running there, is that port open in its firewall (and this "
                   f"node's way out), is {name}'s address in roster.toml right?")


def _no_hello(name: str, why: str) -> Verdict:
    return Verdict(False, f"connected, but the hello failed: {why}",
                   f"is {name} running p2pfl of this version (it must answer {HELLO_PROTOCOL})?")


def _proven_peer(exc: BaseException) -> str | None:
    """The peer ID the Noise handshake proved, when it is not the one dialled."""
    for e in _chain(exc):
        for pattern in _PROVEN:
            if m := pattern.search(str(e)):
                return m.group(1)
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it: causes, contexts, grouped and MultiError ones."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ()), *getattr(e, "errors", ())]


def _innermost(exc: BaseException) -> BaseException:
    """The first root cause (the OS error behind libp2p's wrappers and groups)."""
    while True:
        grouped = [*getattr(exc, "exceptions", ()), *getattr(exc, "errors", ())]
        behind = exc.__cause__ or exc.__context__ or (grouped[0] if grouped else None)
        if behind is None:
            return exc
        exc = behind


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
