"""Encoding, decoding and checking signed model updates."""

import hashlib
import math
import tracemalloc

import msgpack
import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.learning.params import fingerprint
from p2pfl.protocol import codec
from p2pfl.protocol.checks import check_against
from p2pfl.protocol.codec import (
    decode,
    encode,
    encode_parts,
    pack_signed,
    parse,
    payload_digest,
    state_dict,
)
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.messages import BadSignature, InvalidMessage

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
FP = "ab" * 32
CONSORTIUM = consortium_of({"roster": ["a", "b"], "training": {"lr": 0.1}, "gossip": {"k": 2}})
# decoding read-only bytes gives tensors over a read-only buffer; torch warns once about it
pytestmark = pytest.mark.filterwarnings("ignore:The given buffer is not writable")
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=60)

DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.float64,
    torch.int32,
    torch.uint8,
    torch.bool,
]


def make_tensor(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 100).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    low, high = (0, 256) if dtype == torch.uint8 else (-(2**31), 2**31 - 1)
    return torch.randint(low, high, shape, generator=g, dtype=torch.int64).to(dtype)


shapes = st.one_of(
    st.lists(st.integers(0, 4), max_size=4).map(tuple),
    st.sampled_from([(), (0,), (3, 0, 2), (70_001,), (257, 129), (1, 1, 1, 1, 1, 1, 1, 1)]),
)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@st.composite
def state_dicts(draw) -> dict[str, torch.Tensor]:
    keys = draw(st.lists(names, max_size=6, unique=True))
    return {
        k: make_tensor(draw(shapes), draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31)))
        for k in keys
    }


def sample_message(tensors=None, key=KEY, **fields) -> memoryview:
    if tensors is None:
        tensors = {"fc.weight": make_tensor((3, 5), torch.float32, 1), "fc.bias": torch.ones(3)}
    args = dict(consortium=CONSORTIUM, round=4, fingerprint=FP, num_samples=120, weight=0.25,
                metrics={"loss": 0.7})
    args.update(fields)
    return encode(key, tensors=tensors, **args)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


# ---- round trips


@SETTINGS
@given(
    tensors=state_dicts(),
    round=st.integers(0, 2**63 - 1),
    num_samples=st.integers(0, 2**63 - 1),
    weight=st.floats(0, 1e300),
    metrics=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda s: s.isprintable()), st.floats(), max_size=5
    ),
)
def test_round_trip(tensors, round, num_samples, weight, metrics):
    blob = encode(
        KEY,
        consortium=CONSORTIUM,
        round=round,
        fingerprint=FP,
        num_samples=num_samples,
        weight=weight,
        tensors=tensors,
        metrics=metrics,
    )
    parts = encode_parts(
        KEY,
        consortium=CONSORTIUM,
        round=round,
        fingerprint=FP,
        num_samples=num_samples,
        weight=weight,
        tensors=tensors,
        metrics=metrics,
    )
    assert b"".join(parts) == blob  # Ed25519 signatures are deterministic
    update = decode(bytes(blob))
    assert update.sender == peer_id_of(KEY)
    assert (update.round, update.num_samples, update.weight) == (round, num_samples, weight)
    assert update.fingerprint == FP
    assert update.consortium == CONSORTIUM.id and update.sections == CONSORTIUM.short_sections()
    assert update.metrics.keys() == metrics.keys()
    assert all(
        update.metrics[k] == v or (math.isnan(v) and math.isnan(update.metrics[k]))
        for k, v in metrics.items()
    )
    out = state_dict(update)
    assert list(out) == list(tensors)
    assert all(same(out[k], tensors[k]) for k in tensors)


def test_round_trip_of_a_large_update_hashed_in_parallel():
    # > 8 chunks of 1 MiB, tensor boundaries off the chunk grid, odd sizes and empty tensors
    tensors = {
        "a": make_tensor((1_048_581,), torch.uint8, 1),
        "empty": torch.zeros(0, 3),
        "b": make_tensor((2001, 1003), torch.float32, 2),
        "c": make_tensor((777_777,), torch.bfloat16, 3),
        "d": make_tensor((3,), torch.bool, 4),
    }
    blob = sample_message(tensors)
    assert len(blob) > 8 * codec.CHUNK_SIZE
    args = dict(consortium=CONSORTIUM, round=4, fingerprint=FP, num_samples=120, weight=0.25,
                metrics={"loss": 0.7})
    assert b"".join(encode_parts(KEY, tensors=tensors, **args)) == blob
    out = state_dict(decode(blob))
    assert all(same(out[k], tensors[k]) for k in tensors)


def test_payload_digest_is_the_documented_tree():
    payload = bytes(range(256)) * 10_000
    chunks = [payload[i : i + codec.CHUNK_SIZE] for i in range(0, len(payload), codec.CHUNK_SIZE)]
    expected = hashlib.sha256(len(payload).to_bytes(8, "big"))
    for c in chunks:
        expected.update(hashlib.sha256(c).digest())
    assert payload_digest(payload) == expected.digest()
    assert payload_digest(b"") == hashlib.sha256(bytes(8)).digest()


def test_encode_accepts_non_contiguous_and_grad_tensors():
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"t": base.t(), "g": torch.ones(2, requires_grad=True), "n": base.neg().conj()}
    out = state_dict(decode(sample_message(tensors)))
    assert torch.equal(out["t"], base.t()) and torch.equal(out["n"], -base)


def test_decoded_tensors_are_views_of_the_received_buffer():
    buf = bytearray(sample_message())
    out = state_dict(decode(buf))
    base = torch.frombuffer(buf, dtype=torch.uint8).data_ptr()
    for t in out.values():
        assert base <= t.data_ptr() < base + len(buf)
        assert t.data_ptr() % 64 == base % 64  # tensors start on 64-byte boundaries
    out["fc.bias"][0] = 7.0  # a writable buffer gives writable views
    assert torch.equal(state_dict(parse(buf))["fc.bias"], torch.tensor([7.0, 1.0, 1.0]))


# ---- rejections


def test_signature_by_another_key_is_rejected():
    forged = craft(lambda header: None, key=OTHER)  # claims KEY's peer ID
    with pytest.raises(BadSignature, match="does not verify against sender"):
        decode(forged)
    assert decode(craft(lambda header: None)).sender == peer_id_of(KEY)


def craft(change, payload: bytes | None = None, key=KEY) -> memoryview:
    """A correctly signed message whose header map `change` altered."""
    update = parse(sample_message())
    header = msgpack.unpackb(update.header)
    change(header)
    body = bytes(update.payload) if payload is None else payload
    return pack_signed(header, [np.frombuffer(body, np.uint8)], key)


def setter(key, value):
    return lambda h: h.__setitem__(key, value)


def set_tensor(i, j, value):
    return lambda h: h["tensors"][i].__setitem__(j, value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (setter("version", 3), "unsupported format version 3 \\(expected 2\\)"),
        (setter("version", 2.0), "version 2.0 is not an integer"),
        (lambda h: h.pop("weight"), "missing field\\(s\\): weight"),
        (setter("extra", 1), "unknown field\\(s\\): 'extra'"),
        (setter(b"bin", 1), "unknown field\\(s\\): b'bin'"),
        (setter("sender", "12D3KooWnotreally"), "sender: peer ID"),
        (setter("sender", 5), "sender is an int"),
        (setter("round", -1), "round -1 is not an integer"),
        (setter("round", 2**64 - 1), "round 18446744073709551615 is not an integer"),
        (setter("round", 1.0), "round 1.0 is not an integer"),
        (setter("num_samples", "3"), "num_samples '3' is not an integer"),
        (setter("fingerprint", "AB" * 32), "fingerprint .* is not 64 lowercase hex"),
        (setter("fingerprint", "ab"), "not 64 lowercase hex"),
        (setter("weight", float("nan")), "weight nan is not a finite float"),
        (setter("weight", -1.0), "weight -1.0 is not a finite float"),
        (setter("weight", 1), "weight 1 is not a finite float"),
        (setter("metrics", []), "metrics is a list"),
        (setter("metrics", {"loss": 1}), "metric 'loss' is an int, not a float"),
        (setter("metrics", {"": 1.0}), "metric name '' is not"),
        (setter("metrics", {f"m{i}": 0.0 for i in range(65)}), "65 entries"),
        (setter("tensors", {}), "tensors is a dict"),
        (set_tensor(0, 1, "complex64"), "dtype 'complex64' is not one of"),
        (set_tensor(0, 2, [3, -5]), "dimension -5 is not an integer >= 0"),
        (set_tensor(0, 2, [3, 5.0]), "dimension 5.0 is not an integer"),
        (set_tensor(0, 2, [1] * 17), "17 dimensions \\(at most 16\\)"),
        (set_tensor(0, 2, "3x5"), "shape is a str"),
        (set_tensor(0, 0, ""), "name '' is not a non-empty"),
        (set_tensor(1, 0, "fc.weight"), "the name appears twice"),
        (lambda h: h["tensors"][0].append(1), "tensor #0 is not a \\[name, dtype, shape\\]"),
        (set_tensor(0, 2, [2**61, 2]), f"needs {2**64} bytes at payload offset 0"),
        (set_tensor(0, 2, [2**62, 2**62]), "shape .* is too large"),
        (set_tensor(0, 2, [0, 2**64 - 1]), "shape .* is too large"),
        (set_tensor(1, 2, [2]), "payload has 4 bytes after the last tensor"),
        (set_tensor(1, 2, [4]), "tensor #1 \\('fc.bias'\\) .* needs 16 bytes"),
        (set_tensor(1, 1, "float64"), "tensor #1 \\('fc.bias'\\) .* needs 24 bytes"),
        (lambda h: h.pop("consortium"), "missing field\\(s\\): consortium"),
        (setter("consortium", b"x" * 31), "consortium b'x{31}' is not 32 bytes"),
        (setter("consortium", "ab" * 16), "consortium 'abab.*' is not 32 bytes"),
        (setter("sections", []), "sections is a list, not a map"),
        (setter("sections", {f"s{'_' * i}": bytes(8) for i in range(17)}), "sections has 17 entries"),
        (setter("sections", {"Training": bytes(8)}), "section name 'Training' is not 1 to 32"),
        (setter("sections", {"x" * 33: bytes(8)}), "section name 'x+' is not 1 to 32"),
        (setter("sections", {"": bytes(8)}), "section name '' is not"),
        (setter("sections", {"training": bytes(32)}), "section 'training' digest .* is not 8 bytes"),
        (setter("sections", {"training": "0" * 8}), "section 'training' digest '0+' is not 8 bytes"),
    ],
)
def test_header_problems_are_named(change, reason):
    with pytest.raises(InvalidMessage, match=reason):
        decode(craft(change))


def test_header_that_is_not_a_map():
    blob = bytearray(sample_message())
    with pytest.raises(InvalidMessage, match="not a map"):
        decode(frame(msgpack.packb([1, 2, 3])))
    with pytest.raises(InvalidMessage, match="not valid msgpack"):
        decode(frame(b"\xc1"))
    with pytest.raises(InvalidMessage, match="not valid msgpack: ExtraData"):
        decode(frame(msgpack.packb({}) + b"\x00"))
    duplicate = b"\x82\xa5round\x01\xa5round\x02"
    with pytest.raises(InvalidMessage, match="map with the key 'round' twice"):
        decode(frame(duplicate))
    blob[:4] = b"PK\x03\x04"
    with pytest.raises(InvalidMessage, match="not a p2pfl model update"):
        decode(blob)


def test_digest_of_the_wrong_size():
    header = msgpack.unpackb(parse(sample_message()).header)
    header["payload_digest"] = b"x"
    with pytest.raises(InvalidMessage, match="payload_digest b'x' is not 32 bytes"):
        decode(frame(msgpack.packb(header)))


N = codec.MAX_HEADER_SIZE
EMPTY_ARRAYS = b"\xdc\x10\x00" + b"\x90" * 4096  # an array of 4096 empty arrays


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\x91" * 4 + b"\x90", "nests arrays and maps deeper than 4 levels"),
        (b"\x81\xa1k" * 4 + b"\x80", "nests arrays and maps deeper than 4 levels"),
        (b"\x91" * (N - 1) + b"\x90", "nests arrays and maps deeper than 4 levels"),
        (b"\x93" + EMPTY_ARRAYS * 3, "more than 8196 arrays and maps"),
        (b"\xda\x08\x01" + b"a" * 2049, "a string of 2049 bytes \\(at most 2048\\)"),
        (b"\xdb\xff\xff\xff\xff", "a string of 4294967295 bytes"),
        (b"\xc4\x21" + bytes(33), "a binary value of 33 bytes \\(at most 32\\)"),
        (b"\x91\xdd\xff\xff\xff\xff", "an array of 4294967295 items \\(at most 4096\\)"),
        (b"\xdc\x10\x01" + bytes(4097), "an array of 4097 items"),
        (b"\xdf\xff\xff\xff\xff", "a map of 4294967295 entries \\(at most 64\\)"),
        (b"\x81\xa1k\xd4\x01\x00", "ext value"),
        (b"\xc7\x00\x01", "ext value"),
        (b"\x91" * 4 + b"\xd9", "not valid msgpack"),  # four levels pass; truncation is msgpack's
    ],
)
def test_header_limits(header, reason):
    with pytest.raises(InvalidMessage, match=reason):
        decode(frame(header))


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=300), st.binary(max_size=32),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
).flatmap(  # wrapped in 0 to 4 more arrays or maps, to reach past the depth limit often
    lambda v: st.lists(st.booleans(), max_size=4).map(
        lambda wraps: _wrap(v, wraps)
    )
)


def _wrap(value, wraps: list[bool]):
    for in_map in wraps:
        value = {"k": value} if in_map else [value, 1]
    return value


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@SETTINGS
@given(values)
def test_the_nesting_scan_agrees_with_msgpack(value):
    packed = msgpack.packb(value, use_bin_type=True)
    if depth(value) > codec.MAX_DEPTH:
        with pytest.raises(InvalidMessage, match="deeper than 4 levels"):
            codec._check_nesting(packed)
    else:
        codec._check_nesting(packed)  # passes whatever scalars and lengths the value has


def test_header_length_limit_is_64_kib():
    bomb = b"\x91" * (N - 1) + b"\x90"
    with pytest.raises(InvalidMessage, match="deeper than 4"):  # at the limit: read, and refused
        decode(frame(bomb))
    with pytest.raises(InvalidMessage, match=f"header length {N + 1} is over the limit of {N}"):
        decode(frame(bomb + b"\x90"))


# Headers within 64 KiB that build the most, or make the scan work hardest.
_ENTRY = b"\x93\xa1t\xa7float32\x9c" + b"\x01" * 12  # ["t", "float32", [1] * 12]
WORST_HEADERS = [
    b"\x91" * (N - 1) + b"\x90",  # nesting
    b"\x9f" + EMPTY_ARRAYS * 15,  # too many arrays
    b"\x92" + EMPTY_ARRAYS * 2,  # as many arrays as allowed
    b"\x92" + (b"\xdc\x10\x00" + b"\x80" * 4096) * 2,  # as many maps
    b"\x9f" + (b"\xdc\x10\x00" + bytes(4096)) * 15,  # 61,440 scalars
    b"\xdc\x0f\xff" + (b"\xaf" + b"x" * 15) * 4095,  # strings
    b"\xdc\x0f\xff" + (b"\xcb" + bytes(8)) * 4095,  # floats
    b"\x81\xa7tensors\xdc\x0a\x8c" + _ENTRY * 2700,  # a tensor table
]


def test_worst_headers_are_refused_in_little_memory():
    for header in WORST_HEADERS:
        assert len(header) <= N
        data = frame(header)
        tracemalloc.start()
        try:
            with pytest.raises(InvalidMessage):
                decode(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10 << 20, (header[:8], peak)


def test_expected_sender_is_checked_against_the_signature_and_the_header():
    me, other = peer_id_of(KEY), peer_id_of(OTHER)
    assert decode(sample_message(), expected_sender=me).sender == me
    relayed = sample_message(key=OTHER)  # a valid update of OTHER's, sent by KEY's peer
    with pytest.raises(BadSignature, match=f"key of {me}, the peer that sent it"):
        decode(relayed, expected_sender=me)
    assert decode(relayed).sender == other
    impostor = craft(setter("sender", me), key=OTHER)  # OTHER signs a header naming KEY
    with pytest.raises(InvalidMessage, match=f"signed and sent by {other} but names {me}"):
        decode(impostor, expected_sender=other)
    with pytest.raises(BadSignature, match=f"does not verify against sender {me}"):
        decode(impostor)
    with pytest.raises(InvalidMessage, match="the sending peer 'QmNotEd25519' has no Ed25519 key"):
        decode(sample_message(), expected_sender="QmNotEd25519")


def test_an_unsigned_header_is_never_unpacked_when_the_sender_is_known(monkeypatch):
    bomb = frame(b"\x91" * (N - 1) + b"\x90")
    with pytest.raises(InvalidMessage, match="deeper than 4"):
        decode(bomb)
    calls = []
    monkeypatch.setattr(codec, "_unpack", lambda *a: calls.append(a))
    monkeypatch.setattr(codec, "_check_nesting", lambda *a: calls.append(a))
    with pytest.raises(BadSignature, match="not signed by its sender"):
        decode(bomb, expected_sender=peer_id_of(KEY))
    assert calls == []


def test_encode_keeps_to_the_header_limits():
    tiny = {f"{i:x}": torch.zeros(0, dtype=torch.bool) for i in range(codec.MAX_TENSORS)}
    update = decode(sample_message(tiny, metrics={}))
    assert len(update.tensors) == codec.MAX_TENSORS and len(update.header) <= N
    with pytest.raises(ValueError, match="4097 tensors \\(at most 4096\\)"):
        sample_message({**tiny, "x": torch.zeros(0)})
    long_names = {"n" * 500 + str(i): torch.zeros(1) for i in range(140)}
    with pytest.raises(ValueError, match="the header would be 7[0-9]{4} bytes, over the limit of 65536"):
        sample_message(long_names)


def frame(header: bytes, payload: bytes = b"") -> bytes:
    head = codec.MAGIC + len(header).to_bytes(4, "big") + bytes(64) + header
    return head + bytes(-len(head) % 64) + payload


def test_bool_tensor_bytes_must_be_0_or_1():
    payload = bytes([0, 1, 2])
    change = setter("tensors", [["flags", "bool", [3]]])
    with pytest.raises(InvalidMessage, match="bytes other than 0, 1"):
        decode(craft(change, payload))
    assert decode(craft(change, bytes([0, 1, 1]))).tensors[0].shape == (3,)


def test_nonzero_padding_is_rejected():
    blob = bytearray(sample_message({"a": torch.ones(1), "b": torch.ones(1)}))
    update = parse(blob)
    start = len(blob) - update.payload.nbytes
    blob[start + 5] = 1  # between tensor a (4 bytes) and tensor b (at offset 64)
    with pytest.raises(InvalidMessage, match="padding before tensor #1"):
        parse(blob)
    blob[start + 5] = 0
    blob[start - 1] = 1  # between the header and the payload
    with pytest.raises(InvalidMessage, match="padding between header and payload"):
        parse(blob)


def test_size_limits():
    blob = sample_message()
    with pytest.raises(InvalidMessage, match=f"{len(blob)} bytes, over the limit of 100"):
        decode(blob, max_size=100)
    with pytest.raises(InvalidMessage, match="shorter than the 72-byte prefix"):
        decode(b"P2FL")
    with pytest.raises(InvalidMessage, match="header length 4294967295 is over the limit"):
        decode(codec.MAGIC + b"\xff" * 4 + bytes(64))
    with pytest.raises(InvalidMessage, match="truncated"):
        decode(bytes(blob)[:200])
    with pytest.raises(InvalidMessage, match="expected bytes, got str"):
        decode("P2FL")  # type: ignore[arg-type]


def test_tampered_payload_is_rejected():
    blob = bytearray(sample_message())
    blob[-1] ^= 0x10
    with pytest.raises(InvalidMessage, match="payload does not match the signed digest"):
        decode(blob)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"fingerprint": "xyz"}, "fingerprint 'xyz'"),
        ({"weight": float("inf")}, "weight inf"),
        ({"round": -3}, "round -3"),
        ({"tensors": {"c": torch.ones(2, dtype=torch.complex64)}}, "dtype torch.complex64"),
        ({"tensors": {"s": torch.ones(2).to_sparse()}}, "only dense tensors"),
        ({"tensors": {"x": [1.0]}}, "is a list, not a torch.Tensor"),
        ({"tensors": {"": torch.ones(1)}}, "name '' is not"),
        ({"tensors": {"\ud800": torch.ones(1)}}, "surrogate|utf-8"),
    ],
)
def test_encode_refuses_what_decode_would_reject(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        sample_message(**kwargs)


# ---- checking against the local model


SPECS = [("fc.weight", (3, 5), torch.float32), ("fc.bias", (3,), torch.float32)]


def test_check_against_accepts_a_matching_update():
    tensors = {"fc.weight": make_tensor((3, 5), torch.float32, 9), "fc.bias": torch.zeros(3)}
    out = check_against(decode(sample_message(tensors, fingerprint=fingerprint(SPECS))), SPECS)
    assert torch.equal(out["fc.weight"], tensors["fc.weight"])


@pytest.mark.parametrize(
    ("tensors", "fp_specs", "reason"),
    [
        (None, [("other", (1,), torch.float32)], "fingerprint [0-9a-f]{16} does not match"),
        ({"fc.weight": torch.zeros(3, 5)}, SPECS, "missing \\['fc.bias'\\], extra \\[\\]"),
        (
            {"fc.bias": torch.zeros(3), "fc.weight": torch.zeros(3, 5)},
            SPECS,
            "not in the model's parameter order",
        ),
        (
            {"fc.weight": torch.zeros(5, 3), "fc.bias": torch.zeros(3)},
            SPECS,
            "'fc.weight' has shape \\(5, 3\\), the model has \\(3, 5\\)",
        ),
        (
            {"fc.weight": torch.zeros(3, 5), "fc.bias": torch.zeros(3, dtype=torch.float16)},
            SPECS,
            "'fc.bias' has dtype float16",
        ),
        (
            {"fc.weight": torch.zeros(3, 5), "fc.bias": torch.tensor([0.0, math.nan, math.inf])},
            SPECS,
            "'fc.bias' has 2 NaN or infinite value\\(s\\)",
        ),
    ],
)
def test_check_against_names_the_problem(tensors, fp_specs, reason):
    update = decode(sample_message(tensors, fingerprint=fingerprint(fp_specs)))
    with pytest.raises(InvalidMessage, match=reason):
        check_against(update, SPECS)
