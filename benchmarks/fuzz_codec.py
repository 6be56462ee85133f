"""Fuzz the update decoder: every input must decode or raise InvalidMessage, nothing else.

Feeds `decode` mutated valid messages (bit flips, byte writes, truncation, extension,
splices, deleted and repeated ranges, edited header lengths), random bytes, random msgpack
headers, and correctly re-signed messages whose header fields were changed (huge declared
sizes, negative or too many dimensions, wrong types, missing and unknown fields), so the
checks behind the signature are reached too. A fifth of the inputs are raw msgpack aimed at
the header limits (64 KiB, nesting depth 4, bounded lengths): nested arrays and maps, deep
nesting, long strings and bins, huge declared lengths, ext values, many tensors, bombs inside
valid headers and bombs at and just over 64 KiB; some are signed, and a third of all inputs
are decoded with `expected_sender`, so the header behind a good signature is reached too.

    python benchmarks/fuzz_codec.py [--inputs 100000] [--seed 1]

Prints the counts; the largest memory peak of one input (tracemalloc) and the RSS growth over
the run; the slowest input (re-timed without tracemalloc); and the cost of refusing one
64 KiB nesting bomb of each shape, unsigned and signed. Exits 1 if any input raised something
other than InvalidMessage.
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import sys
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Callable

import msgpack
import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import codec
from p2pfl.protocol.codec import decode, encode, pack_signed, state_dict
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import peer_id_of, sign
from p2pfl.protocol.messages import DTYPES, InvalidMessage

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SENDER = peer_id_of(KEY)
CONSORTIUM = consortium_of({"training": {"lr": 0.1}, "gossip": {"topology": "ring"}})
N = codec.MAX_HEADER_SIZE
HUGE = [2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -1]
ODD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    *HUGE,
    0.0,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    1e308,
    "",
    "x",
    "ab" * 32,
    "12D3KooW",
    b"",
    b"\0" * 32,
    [],
    [1, 2],
    {},
    {"a": 1.0},
    [[["deep"]]],
]


def base_messages(rng: random.Random) -> list[bytes]:
    """A few valid updates covering every dtype, 0-d, empty and odd-sized tensors."""
    out = []
    for n in range(6):
        tensors = {}
        for i in range(rng.randint(0, 5)):
            dtype = rng.choice(list(DTYPES.values()))
            shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
            t = torch.randint(0, 2, shape).to(dtype)
            tensors[f"layer{i}.{rng.choice(['weight', 'bias'])}"] = t
        blob = encode(
            KEY,
            consortium=CONSORTIUM,
            round=n,
            fingerprint=f"{n:02x}" * 32,
            num_samples=rng.randint(0, 1000),
            weight=rng.random(),
            tensors=tensors,
            metrics={"loss": rng.random()} if n % 2 else {},
        )
        out.append(bytes(blob))
    return out


def frame(header_bytes: bytes, payload: bytes, signed: bool = False) -> bytes:
    """A message around arbitrary header bytes, signed by KEY or with a zero signature."""
    signature = sign(KEY, codec.SIGNING_CONTEXT + header_bytes) if signed else bytes(64)
    head = codec.MAGIC + len(header_bytes).to_bytes(4, "big") + signature + header_bytes
    return head + bytes(-len(head) % codec.ALIGN) + payload


def random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(ODD_VALUES)
    if kind == 1:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 2:
        return rng.uniform(-1e9, 1e9)
    if kind == 3:
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 12)))
    if kind == 4:
        return rng.randbytes(rng.randint(0, 40))
    if kind == 5:
        return msgpack.ExtType(rng.randint(0, 127), rng.randbytes(rng.randint(0, 8)))
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(["version", "sender", "tensors", "x", ""]): random_value(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def mutate_header(header: dict, rng: random.Random) -> None:
    """Change one thing in a decoded header, in place."""
    keys = list(codec.HEADER_KEYS)
    table = header.get("tensors")
    if not isinstance(table, list) or not all(
        isinstance(e, list) and len(e) == 3 and isinstance(e[2], list) for e in table
    ):
        header["tensors"] = table = []
    choice = rng.randrange(8)
    if choice == 0:
        header[rng.choice(keys)] = random_value(rng)
    elif choice == 1:
        header.pop(rng.choice(keys), None)
    elif choice == 2:
        header[rng.choice(["extra", "Version", "tensor"])] = random_value(rng)
    elif choice == 3 and table:
        entry = rng.choice(table)
        field = rng.randrange(3)
        if field == 2 and entry[2] and rng.random() < 0.7:
            entry[2][rng.randrange(len(entry[2]))] = rng.choice(HUGE + [0, 1, 2, 3])
        elif field == 2:
            dims = [0, 1, 2, 2**40, *HUGE]
            entry[2] = [rng.choice(dims) for _ in range(rng.randint(0, 20))]
        elif field == 1:
            entry[1] = rng.choice([*DTYPES, "complex64", "float8", "", "F32"])
        else:
            entry[0] = rng.choice(["", "dup", table[0][0], "x" * 600])
    elif choice == 4:
        table.append(
            [f"t{rng.randrange(99)}", rng.choice(list(DTYPES)), [rng.choice(HUGE + [1, 5])]]
        )
    elif choice == 5 and table:
        table.pop(rng.randrange(len(table)))
    elif choice == 6:
        header["metrics"] = {f"m{i}": random_value(rng) for i in range(rng.randint(0, 70))}
    else:
        header[rng.choice(["round", "num_samples", "version"])] = rng.choice(HUGE + [True, 1.5])


def mutate(blob: bytes, others: list[bytes], headers: list[dict], rng: random.Random) -> bytes:
    """One fuzz input derived from a valid message (or from nothing)."""
    op = rng.randrange(12)
    data = bytearray(blob)
    if op == 0:  # flip a few bits
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    elif op == 1:  # write interesting bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(
                [0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)]
            )
    elif op == 2:
        del data[rng.randrange(len(data)) :]
    elif op == 3:
        data += rng.randbytes(rng.randint(1, 200))
    elif op == 4:
        other = rng.choice(others)
        data = data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]
    elif op == 5:  # delete or repeat a range
        i = rng.randrange(len(data))
        j = min(len(data), i + rng.randint(1, 64))
        data[i:j] = b"" if rng.random() < 0.5 else data[i:j] * 2
    elif op == 6:  # edit the header length
        length = int.from_bytes(data[4:8], "big")
        new = rng.choice([0, 1, length - 1, length + 1, length + 64, 2**24, 2**32 - 1])
        data[4:8] = (new % 2**32).to_bytes(4, "big")
    elif op == 7:
        data = bytearray(rng.randbytes(rng.randint(0, 2000)))
        if rng.random() < 0.5:
            data[:4] = codec.MAGIC
    elif op == 8:  # random msgpack as the header
        body = msgpack.packb(random_value(rng))
        return frame(body, rng.randbytes(rng.randint(0, 128)))
    elif op == 9:  # a valid header with random values, unsigned
        header = copy.deepcopy(rng.choice(headers))
        mutate_header(header, rng)
        return frame(msgpack.packb(header), rng.randbytes(rng.choice([0, 8, 64, 200])))
    else:  # a changed header, correctly signed, so the checks behind the signature run
        header = copy.deepcopy(rng.choice(headers))
        for _ in range(rng.randint(1, 2)):
            mutate_header(header, rng)
        payload = rng.choice([bytes(codec.parse(rng.choice(others)).payload), b""])
        if rng.random() < 0.3 and payload:
            payload = payload[: rng.randrange(len(payload))]
        try:
            return bytes(pack_signed(header, [np.frombuffer(payload, np.uint8)], KEY))
        except (TypeError, ValueError, OverflowError):  # msgpack cannot pack it: try again
            return bytes(blob)
    return bytes(data)


# ---------------------------------------------------------------- header limits

LIMIT_LENGTHS = [0, 1, 15, 16, 31, 32, 33, 255, 256, 2047, 2048, 2049, 4095, 4096, 4097,
                 65535, 65536, 2**31, 2**32 - 1]


def length_prefix(kind: str, n: int) -> bytes:
    """The msgpack type bytes announcing a str/bin/ext/array/map of `n` (which may lie)."""
    if kind == "str" and n < 32:
        return bytes([0xA0 | n])
    if kind in ("array", "map") and n < 16:
        return bytes([(0x90 if kind == "array" else 0x80) | n])
    codes = {"str": (0xD9, 0xDA, 0xDB), "bin": (0xC4, 0xC5, 0xC6), "ext": (0xC7, 0xC8, 0xC9),
             "array": (None, 0xDC, 0xDD), "map": (None, 0xDE, 0xDF)}[kind]
    for code, width in zip(codes, (1, 2, 4), strict=True):
        if code is not None and n < 256**width:
            return bytes([code]) + n.to_bytes(width, "big") + (b"\x01" if kind == "ext" else b"")
    return bytes([codes[2]]) + (2**32 - 1).to_bytes(4, "big")


def nested(rng: random.Random, depth: int, budget: list[int]) -> bytes:
    """Random arrays and maps `depth` levels deep, about budget[0] bytes in all."""
    if depth == 0 or budget[0] <= 0:
        budget[0] -= 1
        return rng.choice([b"\x90", b"\x80", b"\x00", b"\xc0", b"\xa1k", b"\xcb" + bytes(8)])
    n = rng.choice([0, 1, 2, 3, 15, 16, 100, 4096])
    items = []
    for _ in range(n):
        if budget[0] <= 0:
            break
        items.append(nested(rng, depth - 1, budget))
    if rng.random() < 0.5:
        return length_prefix("array", len(items)) + b"".join(items)
    pairs = [b"\xa1" + bytes([97 + i % 26]) + item for i, item in enumerate(items)]
    return length_prefix("map", len(pairs)) + b"".join(pairs)


def bomb(rng: random.Random, size: int) -> bytes:
    """About `size` bytes of nesting: deep chains, or wide arrays of empty containers."""
    shape = rng.randrange(5)
    if shape == 0:  # one deep chain of arrays
        return b"\x91" * (size - 1) + b"\x90"
    if shape == 1:  # a deep chain of maps
        body = b"\x81\xa1k" * ((size - 1) // 3)
        return body + b"\x80" * (size - len(body))
    if shape == 2:  # 16 arrays of up to 4096 empty arrays or maps
        leaf = rng.choice([b"\x90", b"\x80"])
        per = min(4096, max(1, (size - 3) // 16 - 3))
        return b"\xdc\x00\x10" + (b"\xdc" + per.to_bytes(2, "big") + leaf * per) * 16
    if shape == 3:  # deep, then wide at every level
        unit = b"\xdc\x00\x40" + b"\x90" * 63
        return unit * (size // len(unit)) + b"\x90"
    # a small random structure, repeated in up to 16 arrays of up to 4096
    unit = nested(rng, rng.randint(1, 5), [rng.choice([1, 10, 100])])
    per = max(1, min(4096, size // (16 * len(unit))))
    outer = min(16, max(1, size // (per * len(unit))))
    return length_prefix("array", outer) + (length_prefix("array", per) + unit * per) * outer


def exact_size(data: bytes, size: int) -> bytes:
    """`data` cut or padded (with nil, so extra data) to exactly `size` bytes."""
    return data[:size] + b"\xc0" * (size - len(data))


def long_value(rng: random.Random) -> bytes:
    """A str, bin, ext, array or map whose declared length is near a limit or huge."""
    kind = rng.choice(["str", "bin", "ext", "array", "map"])
    n = rng.choice(LIMIT_LENGTHS)
    body_len = min(n, rng.choice([n, 0, 1, 100, N]))
    body = (b"a" if kind == "str" else b"\x00") * min(body_len, 2 * N)
    return length_prefix(kind, n) + body


def embed(header: dict, rng: random.Random, value: bytes) -> bytes:
    """A packed header with raw msgpack `value` put in place of one field or tensor part."""
    marker = "\x00marker\x00"
    header = copy.deepcopy(header)
    where = rng.randrange(4)
    if where == 0 or not header.get("tensors"):
        header[rng.choice(list(codec.HEADER_KEYS))] = marker
    elif where == 1:
        header["tensors"][0][rng.randrange(3)] = marker
    elif where == 2:
        header["tensors"][0][2] = [1, marker]
    else:
        header["metrics"] = {"loss": marker}
    packed = msgpack.packb(header, use_bin_type=True)
    return packed.replace(msgpack.packb(marker), value, 1)


_MANY: dict[tuple[int, int, str], bytes] = {}


def many_tensors(headers: list[dict], rng: random.Random) -> bytes:
    """A packed header listing about MAX_TENSORS empty tensors (a payload of 0 bytes fits)."""
    i = rng.randrange(len(headers))
    n = rng.choice([codec.MAX_TENSORS - 1, codec.MAX_TENSORS, codec.MAX_TENSORS + 1, 6000])
    name = rng.choice(["{:x}", "t{}", "layer{}.weight"])
    if (i, n, name) not in _MANY:  # building them is slow: once each
        header = dict(headers[i])
        header["tensors"] = [[name.format(k), "bool", [0]] for k in range(n)]
        _MANY[i, n, name] = msgpack.packb(header, use_bin_type=True)
    return _MANY[i, n, name]


def limit_input(headers: list[dict], rng: random.Random) -> bytes:
    """One input aimed at the header limits; signed half the time."""
    header = rng.choice(headers)
    op = rng.randrange(7)
    if op == 0:
        body = nested(rng, rng.randint(1, 8), [rng.choice([10, 100, 1000])])
    elif op == 1:  # bombs at, just under and just over the 64 KiB limit, or smaller
        size = rng.choice([N - 1, N, N + 1, rng.randint(1, N)])
        body = exact_size(bomb(rng, size), size)
    elif op == 2:
        body = long_value(rng)
    elif op == 3:
        body = embed(header, rng, rng.choice([long_value(rng), bomb(rng, rng.choice([100, 5000])),
                                              b"\xd4\x01\x00", b"\xc7\x00\x05"]))
    elif op == 4:
        body = many_tensors(headers, rng)
    elif op == 5:  # too many or bad sections
        changed = copy.deepcopy(header)
        changed["sections"] = {rng.choice(["a", "b_c", "X", "", "x" * 33]) * (i + 1): bytes(
            rng.choice([8, 7, 32])) for i in range(rng.choice([1, 16, 17, 64]))}
        body = msgpack.packb(changed, use_bin_type=True)
    else:  # a valid header padded with extra data to around the limit
        body = msgpack.packb(header, use_bin_type=True)
        body = exact_size(body, rng.choice([N - 1, N, N + 1]))
    return frame(body, b"", signed=rng.random() < 0.5)


# ---------------------------------------------------------------- running


def measure(data: bytes, sender: str | None) -> tuple[str, float, int]:
    """Decode one input: its outcome, seconds and tracemalloc peak above the start (bytes)."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        state_dict(decode(data, expected_sender=sender))
        outcome = "accepted"
    except InvalidMessage:
        outcome = "rejected"
    except Exception:  # the bug this script hunts
        outcome = "other"
    seconds = time.perf_counter() - start
    return outcome, seconds, tracemalloc.get_traced_memory()[1] - base


def best_time(fn: Callable[[], object], reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        try:
            fn()
        except InvalidMessage:
            pass
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    except InvalidMessage:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def bomb_costs() -> None:
    """The cost of refusing one 64 KiB nesting bomb of each shape, unsigned and signed."""
    wide = b"\xdc\x10\x00" + b"\x90" * 4096
    shapes = {
        "deep arrays": b"\x91" * (N - 1) + b"\x90",
        "deep maps": exact_size(b"\x81\xa1k" * ((N - 1) // 3), N),
        "16 x 4096 empty arrays": exact_size(b"\x9f" + wide * 15, N),
        "2 x 4096 empty arrays (allowed)": b"\x92" + wide * 2,
        "15 x 4096 small ints": b"\x9f" + (b"\xdc\x10\x00" + bytes(4096)) * 15,
    }
    print("refusing one 64 KiB header bomb (best of 5; tracemalloc peak):")
    for name, body in shapes.items():
        for signed in (False, True):
            data = frame(body, b"", signed=signed)
            sender = SENDER if signed else None

            def run(data: bytes = data, sender: str | None = sender) -> object:
                return decode(data, expected_sender=sender)

            ms, mb = best_time(run) * 1e3, peak_bytes(run) / 1e6
            how = "signed, expected_sender" if signed else "unsigned"
            print(f"  {name:<32} {how:<24} {len(body):>6} bytes {ms:7.2f} ms {mb:7.3f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="The given buffer is not writable")
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    messages = base_messages(rng)
    headers = [msgpack.unpackb(codec.parse(m).header) for m in messages]
    counts = {"rejected": 0, "accepted": 0, "other": 0}
    worst_time: tuple[float, bytes, str | None, int] = (0.0, b"", None, -1)
    worst_peak: tuple[int, bytes, str | None, int] = (0, b"", None, -1)
    rss_start, maxrss_start = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    for index in range(args.inputs):
        if rng.random() < 0.2:
            data = limit_input(headers, rng)
        else:
            data = mutate(rng.choice(messages), messages, headers, rng)
        sender = SENDER if rng.random() < 1 / 3 else None
        outcome, seconds, peak = measure(data, sender)
        counts[outcome] += 1
        if outcome == "other" and counts["other"] <= 5:
            print(f"input {data[:200]!r}...", file=sys.stderr)
            try:
                decode(data, expected_sender=sender)
            except Exception:  # noqa: BLE001 - show the traceback of the bug
                traceback.print_exc()
        worst_time = max(worst_time, (seconds, data, sender, index), key=lambda w: w[0])
        worst_peak = max(worst_peak, (peak, data, sender, index), key=lambda w: w[0])
    seconds = time.perf_counter() - start
    tracemalloc.stop()
    rss_end, maxrss_end = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"fuzz_codec: inputs={args.inputs} rejected={counts['rejected']} "
        f"accepted={counts['accepted']} other_exceptions={counts['other']} "
        f"seed={args.seed} time={seconds:.1f}s (under tracemalloc)"
    )
    _, slow, slow_sender, slow_index = worst_time
    print(
        f"slowest input: #{slow_index}, "
        f"{best_time(lambda: decode(slow, expected_sender=slow_sender)) * 1e3:.2f} ms "
        f"(best of 5 without tracemalloc; {len(slow)} bytes)"
    )
    peak, big, big_sender, big_index = worst_peak
    again = peak_bytes(lambda: state_dict(decode(big, expected_sender=big_sender)))
    print(f"largest memory peak of one input: #{big_index}, {peak / 1e6:.3f} MB in the run, "
          f"{again / 1e6:.3f} MB decoded again alone (tracemalloc; {len(big)} bytes)")
    print(
        f"RSS: {rss_start / 1e6:.1f} MB before, {rss_end / 1e6:.1f} MB after "
        f"(delta {(rss_end - rss_start) / 1e6:+.1f} MB, tracemalloc's own tables included); "
        f"max RSS delta {(maxrss_end - maxrss_start) / 1e3:+.1f} MB"
    )
    bomb_costs()
    return 1 if counts["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
