"""Fuzz the update decoder: every input must decode or raise InvalidMessage, nothing else.

Feeds `decode` mutated valid messages (bit flips, byte writes, truncation, extension,
splices, deleted and repeated ranges, edited header lengths), random bytes, random msgpack
headers, and correctly re-signed messages whose header fields were changed (huge declared
sizes, negative or too many dimensions, wrong types, missing and unknown fields), so the
checks behind the signature are reached too.

    python benchmarks/fuzz_codec.py [--inputs 100000] [--seed 1]

Prints one result line; exits 1 if any input raised something other than InvalidMessage.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
import traceback
import warnings

import msgpack
import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import codec
from p2pfl.protocol.codec import decode, encode, pack_signed, state_dict
from p2pfl.protocol.messages import DTYPES, InvalidMessage

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
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
            round=n,
            fingerprint=f"{n:02x}" * 32,
            num_samples=rng.randint(0, 1000),
            weight=rng.random(),
            tensors=tensors,
            metrics={"loss": rng.random()} if n % 2 else {},
        )
        out.append(bytes(blob))
    return out


def frame(header_bytes: bytes, payload: bytes) -> bytes:
    """An unsigned message around arbitrary header bytes."""
    head = codec.MAGIC + len(header_bytes).to_bytes(4, "big") + bytes(64) + header_bytes
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
    start = time.perf_counter()
    for _ in range(args.inputs):
        data = mutate(rng.choice(messages), messages, headers, rng)
        try:
            state_dict(decode(data))
            counts["accepted"] += 1
        except InvalidMessage:
            counts["rejected"] += 1
        except Exception:  # the bug this script hunts
            counts["other"] += 1
            if counts["other"] <= 5:
                print(f"input {data[:200]!r}...", file=sys.stderr)
                traceback.print_exc()
    seconds = time.perf_counter() - start
    print(
        f"fuzz_codec: inputs={args.inputs} rejected={counts['rejected']} "
        f"accepted={counts['accepted']} other_exceptions={counts['other']} "
        f"seed={args.seed} time={seconds:.1f}s"
    )
    return 1 if counts["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
