"""Any change to a signed update is rejected, and no input makes decode raise anything else."""

import random

import msgpack
import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.protocol import codec
from p2pfl.protocol.codec import decode, encode, pack_signed, state_dict
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.messages import InvalidMessage

pytestmark = pytest.mark.filterwarnings("ignore:The given buffer is not writable")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def message(tensors: dict[str, torch.Tensor]) -> bytes:
    return bytes(
        encode(
            KEY,
            consortium=consortium_of({"training": {"lr": 0.5}, "gossip": {"k": 2}}),
            round=9,
            fingerprint="0f" * 32,
            num_samples=33,
            weight=0.5,
            tensors=tensors,
            metrics={"loss": 1.25, "acc": 0.5},
        )
    )


MESSAGES = [
    message({"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([True, False])}),
    message({"h": torch.ones(5, dtype=torch.bfloat16), "s": torch.tensor(3), "e": torch.ones(0)}),
    message({}),
]


@pytest.mark.parametrize("index", range(len(MESSAGES)))
def test_every_single_bit_flip_is_rejected(index):
    blob = MESSAGES[index]
    decode(blob)
    for pos in range(len(blob)):
        for bit in range(8):
            changed = bytearray(blob)
            changed[pos] ^= 1 << bit
            with pytest.raises(InvalidMessage):
                decode(changed)


@SETTINGS
@given(st.data())
def test_any_single_byte_change_is_rejected(data):
    blob = data.draw(st.sampled_from(MESSAGES))
    pos = data.draw(st.integers(0, len(blob) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != blob[pos]))
    changed = bytearray(blob)
    changed[pos] = value
    with pytest.raises(InvalidMessage):
        decode(changed)


@SETTINGS
@given(st.data())
def test_truncation_and_extension_are_rejected(data):
    blob = data.draw(st.sampled_from(MESSAGES))
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(InvalidMessage):
        decode(blob[:cut])
    with pytest.raises(InvalidMessage):
        decode(blob + data.draw(st.binary(min_size=1, max_size=70)))


def decode_or_reject(data: bytes) -> None:
    try:
        decode(data)
    except InvalidMessage as e:
        assert str(e)


@SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_only_raise_invalid_message(data):
    decode_or_reject(data)
    decode_or_reject(codec.MAGIC + data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10) | st.binary(max_size=5), children, max_size=5)
    ),
    max_leaves=30,
)


@SETTINGS
@given(msgpack_values, st.binary(max_size=300))
def test_arbitrary_msgpack_headers_only_raise_invalid_message(header, payload):
    body = msgpack.packb(header)
    head = codec.MAGIC + len(body).to_bytes(4, "big") + bytes(64) + body
    decode_or_reject(head + bytes(-len(head) % 64) + payload)


def test_deep_nesting_and_odd_msgpack_types_are_rejected():
    deep = b"\x91" * 100_000 + b"\xc0"  # arrays nested 100000 deep
    ext = msgpack.packb({"version": 1, "sender": msgpack.ExtType(5, b"x")})
    timestamp = msgpack.packb({"round": msgpack.Timestamp(1, 0)})
    bad_utf8 = b"\x81\xa2\xff\xfe\x01"
    list_key = b"\x81\x91\x01\x01"
    for body in (deep, ext, timestamp, bad_utf8, list_key, b"\xdd\xff\xff\xff\xff"):
        head = codec.MAGIC + len(body).to_bytes(4, "big") + bytes(64) + body
        with pytest.raises(InvalidMessage):
            decode(head + bytes(-len(head) % 64))


def test_splices_of_two_messages_are_rejected():
    rng = random.Random(7)
    a, b = MESSAGES[0], MESSAGES[1]
    for _ in range(500):
        i, j = rng.randrange(len(a)), rng.randrange(len(b))
        spliced = a[:i] + b[j:]
        if spliced not in (a, b):
            with pytest.raises(InvalidMessage):
                decode(spliced)


dims = st.sampled_from([0, 1, 2, 3, 2**31, 2**62, 2**63 - 1, 2**64 - 1])
tables = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=3),
        st.sampled_from(["float32", "bfloat16", "bool", "int64", "uint8", "complex64"]),
        st.lists(dims, max_size=17),
    ),
    max_size=4,
)


@SETTINGS
@given(tables, st.binary(max_size=100))
def test_signed_messages_with_any_tensor_table_decode_or_raise_invalid_message(table, payload):
    header = msgpack.unpackb(codec.parse(MESSAGES[0]).header)
    header["tensors"] = [list(entry) for entry in table]
    blob = pack_signed(header, [np.frombuffer(payload, np.uint8)], KEY)
    try:
        update = decode(blob)
    except InvalidMessage:
        return
    out = state_dict(update)
    assert [tuple(t.shape) for t in out.values()] == [tuple(e[2]) for e in table]
