"""A small syntax check for the multiaddr strings a roster may hold: a member's own TCP
address, or a circuit address through a relay member (circuit relay v2)."""

from __future__ import annotations

import ipaddress
import re

from p2pfl.protocol.identity import InvalidPeerId, public_key_from_peer_id

HOST_PROTOCOLS = ("ip4", "ip6", "dns", "dns4", "dns6")
PORT_PROTOCOLS = ("tcp", "udp")
PROTOCOLS = (*HOST_PROTOCOLS, *PORT_PROTOCOLS, "p2p")
MAX_LENGTH = 1024
CIRCUIT = "/p2p-circuit"  # the one value-less protocol, only in a circuit address

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class InvalidMultiaddr(Exception):
    """A string that is not a multiaddr this project understands."""


def parse_multiaddr(text: str) -> list[tuple[str, str]]:
    """Split '/ip4/1.2.3.4/tcp/9001' into [('ip4', '1.2.3.4'), ('tcp', '9001')], checked.

    Knows ip4, ip6, dns, dns4, dns6, tcp, udp and p2p; InvalidMultiaddr says what is wrong.
    """
    if not isinstance(text, str):
        raise InvalidMultiaddr(f"a multiaddr must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise InvalidMultiaddr(f"multiaddr is {len(text)} characters long (at most {MAX_LENGTH})")
    if not text.startswith("/"):
        raise InvalidMultiaddr(f"multiaddr {text!r} does not start with '/'")
    if text.endswith("/") and text != "/":
        raise InvalidMultiaddr(f"multiaddr {text!r} ends with '/'")
    parts = text[1:].split("/")
    if len(parts) % 2:
        raise InvalidMultiaddr(f"multiaddr {text!r}: protocol {parts[-1]!r} has no value")
    out = []
    for proto, value in zip(parts[0::2], parts[1::2], strict=True):
        if proto not in PROTOCOLS:
            raise InvalidMultiaddr(
                f"multiaddr {text!r}: unknown protocol {proto!r} (known: {', '.join(PROTOCOLS)})"
            )
        problem = _check_value(proto, value)
        if problem:
            raise InvalidMultiaddr(f"multiaddr {text!r}: {proto} value {value!r} {problem}")
        out.append((proto, value))
    return out


def check_dialable_tcp(text: str) -> list[tuple[str, str]]:
    """Parse a multiaddr a node can dial: /<ip4|ip6|dns|dns4|dns6>/HOST/tcp/PORT[/p2p/ID]."""
    parts = parse_multiaddr(text)
    protos = [p for p, _ in parts]
    if not (
        len(parts) in (2, 3)
        and protos[0] in HOST_PROTOCOLS
        and protos[1] == "tcp"
        and protos[2:] in ([], ["p2p"])
    ):
        raise InvalidMultiaddr(
            f"multiaddr {text!r} is not of the form /ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT[/p2p/ID]"
        )
    if int(parts[1][1]) == 0:
        raise InvalidMultiaddr(f"multiaddr {text!r}: tcp port 0 cannot be dialed")
    return parts


def check_circuit(text: str) -> tuple[list[tuple[str, str]], str]:
    """Parse a circuit address through a relay:
    /<ip4|ip6|dns|dns4|dns6>/HOST/tcp/PORT/p2p/RELAY_ID/p2p-circuit[/p2p/ID]; returns the relay's
    parts (ending with its p2p) and the parts after /p2p-circuit ([] or [('p2p', ID)])."""
    if not isinstance(text, str):
        raise InvalidMultiaddr(f"a multiaddr must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise InvalidMultiaddr(f"multiaddr is {len(text)} characters long (at most {MAX_LENGTH})")
    relay, sep, tail = text.partition(CIRCUIT)
    form = "/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT/p2p/RELAY_ID/p2p-circuit[/p2p/ID]"
    if not sep or (tail and not tail.startswith("/")) or CIRCUIT in tail:
        raise InvalidMultiaddr(f"multiaddr {text!r} is not a circuit address {form}")
    try:
        hop = check_dialable_tcp(relay)
        after = parse_multiaddr(tail) if tail else []
    except InvalidMultiaddr as exc:
        raise InvalidMultiaddr(f"circuit address {text!r}: {exc}") from None
    if hop[-1][0] != "p2p" or [p for p, _ in after] not in ([], ["p2p"]):
        raise InvalidMultiaddr(f"multiaddr {text!r} is not a circuit address {form}")
    return hop, after


def is_circuit(text: str) -> bool:
    """True for an address that names a relay (/p2p-circuit); check it with check_circuit."""
    return CIRCUIT in text


def _check_value(proto: str, value: str) -> str | None:
    """None if `value` is valid for `proto`, else what is wrong with it."""
    if proto == "ip4":
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return "is not an IPv4 address"
    elif proto == "ip6":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return "is not an IPv6 address"
        if "%" in value:
            return "has a zone index, which is not supported"
    elif proto in ("dns", "dns4", "dns6"):
        name = value[:-1] if value.endswith(".") else value
        if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
            return "is not a DNS name"
    elif proto in PORT_PROTOCOLS:
        if not (value.isascii() and value.isdigit()) or int(value) > 65535:
            return "is not a port number (0-65535)"
        if len(value) > 1 and value.startswith("0"):
            return "has a leading zero"
    elif proto == "p2p":
        try:
            public_key_from_peer_id(value)
        except InvalidPeerId as e:
            return f"is not a valid peer ID: {e}"
    return None
