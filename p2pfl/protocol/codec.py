"""Encode and decode signed model updates: a msgpack header and raw tensor bytes, nothing executable.

Layout of one message (all offsets from the first byte):

    0   4 bytes   MAGIC
    4   4 bytes   header length H, big-endian (at most MAX_HEADER_SIZE, 64 KiB)
    8   64 bytes  Ed25519 signature over SIGNING_CONTEXT + header
    72  H bytes   header: a msgpack map (see HEADER_KEYS)
        zeros up to the next multiple of ALIGN: the payload starts there
        payload: the tensors in header order, raw little-endian bytes, each starting at a
        multiple of ALIGN from the payload start, zeros in between, nothing after the last

The header carries `payload_digest`, a SHA-256 tree over the payload (see `payload_digest`),
so the signature covers every byte, and `consortium` and `sections`, which bind the update to
one consortium and its settings (see p2pfl.protocol.consortium). Decoded tensors are views
into the received buffer.

What a received update goes through, in this order; the first failure raises InvalidMessage
and nothing after it is looked at, so the cheap checks guard the costly ones:

1. size: the message (`max_size`), the prefix, MAGIC, the header length, truncation;
2. signature: with `expected_sender` (the authenticated peer of the stream), the signature is
   verified with that peer's key BEFORE the header is parsed, so a header the sending peer did
   not sign is never unpacked;
3. header structure: a scan of the raw bytes bounds nesting depth (MAX_DEPTH) and the number of
   arrays and maps, msgpack unpacks with every length bounded, then each field is type- and
   range-checked (`_check_header`);
4. sender: the header's sender must be `expected_sender` (without one, the signature is checked
   here against the key in the header's sender);
5. tensor layout (sizes, padding, bool bytes), then the payload digest;
6. by the caller: consortium (`consortium.check_consortium`), round and roster (rounds.py),
   fingerprint, shapes, dtypes and finite values (`checks.check_against`).
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import sys
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import torch

from p2pfl.protocol.consortium import SHORT_DIGEST_SIZE, Consortium, check_sections
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    InvalidPeerId,
    peer_id_of,
    public_key_from_peer_id,
    sign,
    verify,
)
from p2pfl.protocol.messages import (
    DTYPE_NAMES,
    DTYPES,
    FORMAT_VERSION,
    BadSignature,
    InvalidMessage,
    ModelUpdate,
    TensorRecord,
)
from p2pfl.protocol.wording import a_type, short

if sys.byteorder != "little":  # tensors go on the wire in native order, which must be little
    raise ImportError("p2pfl.protocol.codec needs a little-endian machine")

MAGIC = b"P2FL"
SIGNING_CONTEXT = b"p2pfl model update v1\0"
SIGNATURE_SIZE = 64
PREFIX_SIZE = 8 + SIGNATURE_SIZE
ALIGN = 64
CHUNK_SIZE = 1 << 20
DIGEST_SIZE = 32

MAX_MESSAGE_SIZE = 1 << 30
MAX_HEADER_SIZE = 64 << 10  # our models' headers are < 1 KiB; this fits ~1,500 named tensors
MAX_TENSORS = 4096  # as many as fit in MAX_HEADER_SIZE with very short names
MAX_NDIM = 16
MAX_NAME_LENGTH = 512  # characters
MAX_METRICS = 64
MAX_UINT63 = (1 << 63) - 1

HEADER_KEYS = (
    "version",
    "sender",
    "consortium",
    "sections",
    "round",
    "fingerprint",
    "num_samples",
    "weight",
    "encoding",
    "metrics",
    "tensors",
    "payload_digest",
)
MAX_ENCODING_LENGTH = 128
# The header schema nests map -> tensors array -> [name, dtype, shape] -> shape array.
MAX_DEPTH = 4
MAX_CONTAINERS = 4 + 2 * MAX_TENSORS  # root, metrics, sections, tensors; entry and shape each
# The most a valid header needs of each, so msgpack allocates no more. (unpackb has no
# max_buffer_size: its buffer is the header itself, at most MAX_HEADER_SIZE bytes.)
MAX_STR_BYTES = 4 * MAX_NAME_LENGTH  # UTF-8 bytes of the longest name
MAX_BIN_BYTES = DIGEST_SIZE
MAX_ARRAY_ITEMS = MAX_TENSORS
MAX_MAP_ENTRIES = max(MAX_METRICS, len(HEADER_KEYS))
_PARALLEL_MIN_CHUNKS = 8
_MAX_HASH_THREADS = 8
_HEX = frozenset("0123456789abcdef")


# ---------------------------------------------------------------- encode


def encode(
    key: Ed25519PrivateKey,
    *,
    consortium: Consortium,
    round: int,
    fingerprint: str,
    num_samples: int,
    weight: float,
    tensors: Mapping[str, torch.Tensor],
    metrics: Mapping[str, float] | None = None,
    encoding: str = "dense",
) -> memoryview:
    """Build and sign an update from `tensors` (in mapping order); the sender is `key`'s peer ID.

    `consortium` is the sender's (its ID and section digests go into the signed header).
    `encoding` says how the tensors represent the model: "dense" (the parameters themselves),
    or a compression spec (see p2pfl.gossip.compression) whose parts the tensors are.

    Returns a writable bytes-like buffer holding the whole message (the tensor bytes are
    copied once). Raises ValueError for anything `decode` would reject.
    """
    header, payload = _prepare(
        key, consortium, round, fingerprint, num_samples, weight, tensors, metrics, encoding
    )
    return pack_signed(header, payload, key)


def encode_parts(
    key: Ed25519PrivateKey,
    *,
    consortium: Consortium,
    round: int,
    fingerprint: str,
    num_samples: int,
    weight: float,
    tensors: Mapping[str, torch.Tensor],
    metrics: Mapping[str, float] | None = None,
    encoding: str = "dense",
) -> list[memoryview]:
    """Like `encode`, but without copying: buffers whose concatenation is the message.

    For writing to a stream piece by piece. The tensor buffers are views of the tensors'
    own memory, so the tensors must not change until the parts are written.
    """
    header, payload = _prepare(
        key, consortium, round, fingerprint, num_samples, weight, tensors, metrics, encoding
    )
    return _frame(header, payload, key, copy=False)


def pack_signed(
    header: dict[str, Any], payload: list[np.ndarray], key: Ed25519PrivateKey
) -> memoryview:
    """Frame and sign a header map and payload arrays (uint8), filling in `payload_digest`.

    Low level, for tests and tools: it does not check the header; use `encode` for updates.
    """
    return _frame(header, payload, key, copy=True)[0]


def _prepare(
    key: Ed25519PrivateKey,
    consortium: Consortium,
    round: int,
    fingerprint: str,
    num_samples: int,
    weight: float,
    tensors: Mapping[str, torch.Tensor],
    metrics: Mapping[str, float] | None,
    encoding: str,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The checked header map and the tensors' bytes, for `encode` and `encode_parts`."""
    if not isinstance(consortium, Consortium):
        raise ValueError(
            f"consortium is {a_type(consortium)}, not a Consortium (see consortium.consortium_of)"
        )
    sources = [_tensor_source(name, t) for name, t in tensors.items()]
    header: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "sender": peer_id_of(key),
        "consortium": consortium.id,
        "sections": consortium.short_sections(),
        "round": operator.index(round),
        "fingerprint": fingerprint,
        "num_samples": operator.index(num_samples),
        "weight": float(weight),
        "encoding": encoding,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "tensors": [[name, dtype, list(shape)] for name, dtype, shape, _ in sources],
        "payload_digest": bytes(DIGEST_SIZE),
    }
    try:
        _check_header(header)
        header_bytes = _pack(header)
        if len(header_bytes) > MAX_HEADER_SIZE:
            raise InvalidMessage(
                f"the header would be {len(header_bytes)} bytes, over the limit of {MAX_HEADER_SIZE}"
            )
        _check_header(_unpack(header_bytes))  # exactly what `decode` will do with it
    except InvalidMessage as e:
        raise ValueError(f"cannot encode this update: {e}") from None
    return header, [src for *_, src in sources]


Segment = tuple[int, int, np.ndarray]  # payload offset, size, uint8 bytes


def _frame(
    header: dict[str, Any], payload: list[np.ndarray], key: Ed25519PrivateKey, copy: bool
) -> list[memoryview]:
    """Lay out, hash and sign; one buffer with `copy`, else the prefix and views of `payload`."""
    header = dict(header)
    header["payload_digest"] = bytes(DIGEST_SIZE)
    header_size = len(_pack(header))  # the digest has a fixed size, so this is final
    payload_start = _align(PREFIX_SIZE + header_size)
    segments: list[Segment] = []
    size = 0
    for arr in payload:
        size = _align(size)
        if arr.nbytes:
            segments.append((size, arr.nbytes, arr))
        size += arr.nbytes
    if copy:
        out = np.empty(payload_start + size, dtype=np.uint8)
        out[PREFIX_SIZE + header_size : payload_start] = 0
        body = out[payload_start:]

        def hash_range(lo: int, hi: int) -> bytes:
            for start, end, src in _pieces(segments, lo, hi):
                body[start:end] = 0 if src is None else src
            return hashlib.sha256(memoryview(body[lo:hi])).digest()

    else:

        def hash_range(lo: int, hi: int) -> bytes:
            h = hashlib.sha256()
            for start, end, src in _pieces(segments, lo, hi):
                h.update(bytes(end - start) if src is None else memoryview(src))
            return h.digest()

    header["payload_digest"] = _tree_digest(size, hash_range)
    header_bytes = _pack(header)
    assert len(header_bytes) == header_size
    signature = sign(key, SIGNING_CONTEXT + header_bytes)
    prefix = MAGIC + header_size.to_bytes(4, "big") + signature + header_bytes
    if copy:
        out[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        return [memoryview(out)]
    parts = [memoryview(prefix + bytes(payload_start - len(prefix)))]
    for start, end, src in _pieces(segments, 0, size):
        parts.append(memoryview(bytes(end - start) if src is None else src))
    return parts


def _tensor_source(name: str, t: torch.Tensor) -> tuple[str, str, tuple[int, ...], np.ndarray]:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor")
    if t.layout != torch.strided:
        raise ValueError(f"tensor {name!r} has layout {t.layout}; only dense tensors are sent")
    dtype = DTYPE_NAMES.get(t.dtype)
    if dtype is None:
        raise ValueError(f"tensor {name!r} has dtype {t.dtype}, which updates cannot carry")
    flat = t.detach().cpu().resolve_neg().contiguous().reshape(-1)
    return name, dtype, tuple(t.shape), flat.view(torch.uint8).numpy()


def _pieces(
    segments: list[Segment], lo: int, hi: int
) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """(start, end, bytes) pieces covering payload [lo, hi); bytes is None for zero padding."""
    i = max(bisect_right(segments, lo, key=lambda s: s[0]) - 1, 0)
    if i < len(segments) and segments[i][0] + segments[i][1] <= lo:
        i += 1
    pos = lo
    while pos < hi:
        if i < len(segments) and segments[i][0] <= pos:
            start, size, arr = segments[i]
            end = min(hi, start + size)
            yield pos, end, arr[pos - start : end - start]
            i += 1
        else:
            end = min(hi, segments[i][0]) if i < len(segments) else hi
            yield pos, end, None
        pos = end


def _pack(header: dict[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


# ---------------------------------------------------------------- decode


def decode(
    data: bytes | bytearray | memoryview,
    max_size: int = MAX_MESSAGE_SIZE,
    expected_sender: str | None = None,
) -> ModelUpdate:
    """Parse, check and verify a received update; any problem raises InvalidMessage.

    With `expected_sender` (the authenticated peer ID the bytes came from), the signature is
    verified with that peer's key before the header is parsed, and the header's sender must be
    that peer. Without it, the signature must verify against the key inside the header's
    sender. BadSignature when it does not. The payload must match the signed digest. Tensors
    are views of `data`. See the module docstring for the order of the checks.
    """
    frame = _split(data, max_size)
    if expected_sender is None:
        update = _build(frame)
        if not signature_ok(update):
            raise BadSignature(f"signature does not verify against sender {update.sender}")
    else:
        if not verify(_sender_key(expected_sender), SIGNING_CONTEXT + frame.header, frame.signature):
            raise BadSignature(
                f"signature does not verify against the key of {expected_sender}, the peer "
                "that sent it: the update was not signed by its sender"
            )
        update = _build(frame)
        if update.sender != expected_sender:
            raise InvalidMessage(
                f"the update is signed and sent by {expected_sender} but names "
                f"{update.sender} as its sender"
            )
    if not payload_ok(update):
        raise InvalidMessage("payload does not match the signed digest: tensor data was altered")
    return update


def parse(data: bytes | bytearray | memoryview, max_size: int = MAX_MESSAGE_SIZE) -> ModelUpdate:
    """Check the structure of a message WITHOUT verifying the signature or the payload digest.

    For tools such as `inspect`; a node must use `decode`.
    """
    return _build(_split(data, max_size))


@dataclass(frozen=True)
class _Frame:
    """A message cut into its parts; only sizes and MAGIC have been checked."""

    view: memoryview
    signature: bytes
    header: bytes
    header_end: int
    payload_start: int


def _split(data: bytes | bytearray | memoryview, max_size: int) -> _Frame:
    """Check sizes and MAGIC, and cut the message into signature, header and the rest."""
    view = _byte_view(data)
    size = view.nbytes
    if size > max_size:
        raise InvalidMessage(f"message is {size} bytes, over the limit of {max_size}")
    if size < PREFIX_SIZE:
        raise InvalidMessage(f"message is {size} bytes, shorter than the {PREFIX_SIZE}-byte prefix")
    if view[:4] != MAGIC:
        raise InvalidMessage(f"message does not start with {MAGIC!r}: not a p2pfl model update")
    header_size = int.from_bytes(view[4:8], "big")
    if header_size > MAX_HEADER_SIZE:
        raise InvalidMessage(f"header length {header_size} is over the limit of {MAX_HEADER_SIZE}")
    header_end = PREFIX_SIZE + header_size
    payload_start = _align(header_end)
    if payload_start > size:
        raise InvalidMessage(
            f"message is {size} bytes, but its header length says the payload starts at "
            f"{payload_start}: truncated"
        )
    return _Frame(
        view, bytes(view[8:PREFIX_SIZE]), bytes(view[PREFIX_SIZE:header_end]), header_end,
        payload_start,
    )


def _build(frame: _Frame) -> ModelUpdate:
    """Unpack and check the header, then lay the tensors out over the payload."""
    fields = _check_header(_unpack(frame.header))
    view = frame.view
    if any(view[frame.header_end : frame.payload_start]):
        raise InvalidMessage("padding between header and payload is not zero")
    payload = view[frame.payload_start :]
    records = _records(fields["tensors"], payload)
    return ModelUpdate(
        version=fields["version"],
        sender=fields["sender"],
        consortium=fields["consortium"],
        sections=fields["sections"],
        round=fields["round"],
        fingerprint=fields["fingerprint"],
        num_samples=fields["num_samples"],
        weight=fields["weight"],
        encoding=fields["encoding"],
        metrics=fields["metrics"],
        tensors=records,
        payload_digest=fields["payload_digest"],
        signature=frame.signature,
        header=frame.header,
        payload=payload,
    )


def _sender_key(peer_id: str) -> Ed25519PublicKey:
    try:
        return public_key_from_peer_id(peer_id)
    except InvalidPeerId as e:
        raise InvalidMessage(f"the sending peer {short(peer_id)} has no Ed25519 key: {e}") from None


def signature_ok(update: ModelUpdate) -> bool:
    """True if the header signature verifies against the sender's peer ID."""
    try:
        key = public_key_from_peer_id(update.sender)
    except InvalidPeerId:
        return False
    return verify(key, SIGNING_CONTEXT + update.header, update.signature)


def payload_ok(update: ModelUpdate) -> bool:
    """True if the payload bytes match the digest in the (signed) header."""
    return payload_digest(update.payload) == update.payload_digest


def payload_digest(payload: bytes | bytearray | memoryview) -> bytes:
    """SHA-256 tree digest of a payload: sha256(len as 8 bytes || sha256 of each 1 MiB chunk).

    The chunks are hashed in parallel threads when the payload is large.
    """
    view = memoryview(payload).cast("B")
    return _tree_digest(view.nbytes, lambda lo, hi: hashlib.sha256(view[lo:hi]).digest())


def state_dict(update: ModelUpdate) -> dict[str, torch.Tensor]:
    """The update's tensors by name, as zero-copy views of the received bytes.

    If the message buffer is read-only (bytes), do not modify the tensors in place.
    """
    out: dict[str, torch.Tensor] = {}
    for rec in update.tensors:
        dtype = DTYPES[rec.dtype]
        if rec.nbytes == 0:
            out[rec.name] = torch.empty(rec.shape, dtype=dtype)
            continue
        with warnings.catch_warnings():  # a read-only buffer (bytes): the tensors are only read
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            t = torch.frombuffer(rec.data, dtype=dtype).view(rec.shape)
        if t.data_ptr() % t.element_size():  # a misaligned buffer: copy rather than risk it
            t = t.clone()
        out[rec.name] = t
    return out


def _byte_view(data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidMessage(f"expected bytes, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise InvalidMessage("the message buffer is not contiguous")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _unpack(header_bytes: bytes) -> object:
    """The header's msgpack value; nesting and every length are bounded before anything is built."""
    _check_nesting(header_bytes)
    try:
        return msgpack.unpackb(
            header_bytes,
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_map_without_duplicates,
            max_str_len=MAX_STR_BYTES,
            max_bin_len=MAX_BIN_BYTES,
            max_array_len=MAX_ARRAY_ITEMS,
            max_map_len=MAX_MAP_ENTRIES,
            max_ext_len=0,
        )
    except InvalidMessage:
        raise
    except Exception as e:  # msgpack raises many types; every one means a malformed header
        raise InvalidMessage(f"header is not valid msgpack: {type(e).__name__}: {e}") from None


# Kinds of msgpack values, by first byte, for the scan in `_check_nesting`.
_SCALAR, _STR, _BIN, _EXT, _ARRAY, _MAP, _NEVER_USED = range(7)


def _layouts() -> tuple[list[int], list[int], list[int]]:
    """Per first byte of a msgpack value: its size if fixed (else 0), its kind, and how many
    bytes after it hold its length or count (0: the first byte holds it, or it has none)."""
    size, kind, width = [1] * 256, [_SCALAR] * 256, [0] * 256
    for first, last, k in ((0x80, 0x8F, _MAP), (0x90, 0x9F, _ARRAY)):
        for b in range(first, last + 1):
            size[b], kind[b] = 0, k
    for b in range(0xA0, 0xC0):  # fixstr: at most 31 bytes, so a fixed-size scalar here
        size[b] = 1 + (b & 0x1F)
    fixed = {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3, 0xD2: 5,
             0xD3: 9}  # floats and ints
    for b, n in fixed.items():
        size[b] = n
    for b in range(0xD4, 0xD9):  # fixext
        size[b], kind[b] = 0, _EXT
    variable = {0xC1: (_NEVER_USED, 0), 0xC4: (_BIN, 1), 0xC5: (_BIN, 2), 0xC6: (_BIN, 4),
                0xC7: (_EXT, 1), 0xC8: (_EXT, 2), 0xC9: (_EXT, 4), 0xD9: (_STR, 1),
                0xDA: (_STR, 2), 0xDB: (_STR, 4), 0xDC: (_ARRAY, 2), 0xDD: (_ARRAY, 4),
                0xDE: (_MAP, 2), 0xDF: (_MAP, 4)}
    for b, (k, w) in variable.items():
        size[b], kind[b], width[b] = 0, k, w
    return size, kind, width


_SIZE, _KIND, _WIDTH = _layouts()
_LIMIT = {  # the longest str/bin (bytes), array (items) and map (entries) a header may hold
    _STR: ("a string", "bytes", MAX_STR_BYTES),
    _BIN: ("a binary value", "bytes", MAX_BIN_BYTES),
    _ARRAY: ("an array", "items", MAX_ARRAY_ITEMS),
    _MAP: ("a map", "entries", MAX_MAP_ENTRIES),
}


def _check_nesting(data: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH, more than MAX_CONTAINERS arrays and maps, any
    ext value, and any string, binary, array or map longer than a valid header holds.

    A walk over the raw bytes that builds nothing, so a 64 KiB header of nested empty arrays
    costs a few milliseconds and no memory. Anything else malformed (truncation, the byte
    0xc1) is left to msgpack, which reports it.
    """
    sizes = _SIZE
    end = len(data)
    stack: list[int] = []  # items left in each enclosing container
    left = 1  # items left at the current level: the root value
    pos = containers = 0
    while True:
        while left:
            left -= 1
            if pos >= end:
                return
            n = sizes[data[pos]]
            if n:  # a fixed-size scalar: the common case, kept inline
                pos += n
                continue
            kind, start, length = _declared(data, pos)
            if kind == _NEVER_USED:
                return
            pos = start
            if kind in (_STR, _BIN):
                pos += length
                continue
            containers += 1
            if len(stack) == MAX_DEPTH:
                raise InvalidMessage(f"header nests arrays and maps deeper than {MAX_DEPTH} levels")
            if containers > MAX_CONTAINERS:
                raise InvalidMessage(f"header has more than {MAX_CONTAINERS} arrays and maps")
            stack.append(left)
            left = 2 * length if kind == _MAP else length
        if not stack:
            return
        left = stack.pop()


def _declared(data: bytes, pos: int) -> tuple[int, int, int]:
    """Kind, content offset and declared length of the str/bin/array/map at `pos`, checked
    against the limits; ext values are refused."""
    b = data[pos]
    kind = _KIND[b]
    if kind == _EXT:
        raise InvalidMessage("header has a msgpack ext value; headers have none")
    if kind == _NEVER_USED:
        return kind, pos, 0
    w = _WIDTH[b]
    length = int.from_bytes(data[pos + 1 : pos + 1 + w], "big") if w else b & 0x0F
    what, unit, limit = _LIMIT[kind]
    if length > limit:
        raise InvalidMessage(f"header has {what} of {length} {unit} (at most {limit})")
    return kind, pos + 1 + w, length


def _map_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[Any] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidMessage(f"header has a map with the key {short(dup)} twice")
    return out


def _check_header(header: object) -> dict[str, Any]:
    """Type- and range-check every header field; returns the header map."""
    if not isinstance(header, dict):
        raise InvalidMessage(f"header is {a_type(header)}, not a map")
    if "version" in header and header["version"] != FORMAT_VERSION:
        raise InvalidMessage(
            f"unsupported format version {short(header['version'])} (expected {FORMAT_VERSION})"
        )
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise InvalidMessage(f"header is missing field(s): {', '.join(missing)}")
    unknown = sorted((k for k in header if k not in HEADER_KEYS), key=repr)
    if unknown:
        raise InvalidMessage(f"header has unknown field(s): {', '.join(map(short, unknown))}")
    _expect_int(header, "version", 0, MAX_UINT63)
    sender = header["sender"]
    if type(sender) is not str:
        raise InvalidMessage(f"sender is {a_type(sender)}, not a string")
    try:
        public_key_from_peer_id(sender)
    except InvalidPeerId as e:
        raise InvalidMessage(f"sender: {e}") from None
    consortium = header["consortium"]
    if type(consortium) is not bytes or len(consortium) != DIGEST_SIZE:
        raise InvalidMessage(f"consortium {short(consortium)} is not {DIGEST_SIZE} bytes")
    check_sections(header["sections"], SHORT_DIGEST_SIZE)
    _expect_int(header, "round", 0, MAX_UINT63)
    fp = header["fingerprint"]
    if type(fp) is not str or len(fp) != 64 or not _HEX.issuperset(fp):
        raise InvalidMessage(f"fingerprint {short(fp)} is not 64 lowercase hex characters")
    _expect_int(header, "num_samples", 0, MAX_UINT63)
    weight = header["weight"]
    if type(weight) is not float or not math.isfinite(weight) or weight < 0:
        raise InvalidMessage(f"weight {short(weight)} is not a finite float >= 0")
    encoding = header["encoding"]
    if type(encoding) is not str or not 0 < len(encoding) <= MAX_ENCODING_LENGTH:
        raise InvalidMessage(f"encoding {short(encoding)} is not a string of 1 to "
                             f"{MAX_ENCODING_LENGTH} characters")
    _check_metrics(header["metrics"])
    _check_tensor_table(header["tensors"])
    digest = header["payload_digest"]
    if type(digest) is not bytes or len(digest) != DIGEST_SIZE:
        raise InvalidMessage(f"payload_digest {short(digest)} is not {DIGEST_SIZE} bytes")
    return header


def _expect_int(header: dict[str, Any], key: str, lo: int, hi: int) -> None:
    value = header[key]
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidMessage(f"{key} {short(value)} is not an integer in [{lo}, {hi}]")


def _check_metrics(metrics: object) -> None:
    if type(metrics) is not dict:
        raise InvalidMessage(f"metrics is {a_type(metrics)}, not a map")
    if len(metrics) > MAX_METRICS:
        raise InvalidMessage(f"metrics has {len(metrics)} entries (at most {MAX_METRICS})")
    for k, v in metrics.items():
        if type(k) is not str or not 0 < len(k) <= MAX_NAME_LENGTH:
            raise InvalidMessage(f"metric name {short(k)} is not a non-empty short string")
        if type(v) is not float:
            raise InvalidMessage(f"metric {k!r} is {a_type(v)}, not a float")


def _check_tensor_table(table: object) -> None:
    if type(table) is not list:
        raise InvalidMessage(f"tensors is {a_type(table)}, not an array")
    if len(table) > MAX_TENSORS:
        raise InvalidMessage(f"{len(table)} tensors (at most {MAX_TENSORS})")
    seen: set[str] = set()
    for i, entry in enumerate(table):
        if type(entry) is not list or len(entry) != 3:
            raise InvalidMessage(f"tensor #{i} is not a [name, dtype, shape] array")
        name, dtype, shape = entry
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise InvalidMessage(f"tensor #{i} name {short(name)} is not a non-empty short string")
        where = f"tensor #{i} ({name!r})"
        if name in seen:
            raise InvalidMessage(f"{where}: the name appears twice")
        seen.add(name)
        if type(dtype) is not str or dtype not in DTYPES:
            raise InvalidMessage(
                f"{where}: dtype {short(dtype)} is not one of {', '.join(DTYPES)}"
            )
        if type(shape) is not list:
            raise InvalidMessage(f"{where}: shape is {a_type(shape)}, not an array")
        if len(shape) > MAX_NDIM:
            raise InvalidMessage(f"{where}: {len(shape)} dimensions (at most {MAX_NDIM})")
        for d in shape:
            if type(d) is not int or d < 0:
                raise InvalidMessage(f"{where}: dimension {short(d)} is not an integer >= 0")
        if math.prod(max(d, 1) for d in shape) > MAX_UINT63:  # strides must fit in int64
            raise InvalidMessage(f"{where}: shape {short(shape)} is too large")


def _records(table: list[list[Any]], payload: memoryview) -> tuple[TensorRecord, ...]:
    """Lay the tensors out over the payload, checking sizes, padding and bool values."""
    size = payload.nbytes
    records = []
    offset = 0
    for i, (name, dtype, shape) in enumerate(table):
        start = _align(offset)
        if start > offset and start <= size and any(payload[offset:start]):
            raise InvalidMessage(f"padding before tensor #{i} ({name!r}) is not zero")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if start + nbytes > size:
            raise InvalidMessage(
                f"tensor #{i} ({name!r}) of shape {tuple(shape)} and dtype {dtype} needs "
                f"{nbytes} bytes at payload offset {start}, but the payload has {size} bytes"
            )
        data = payload[start : start + nbytes]
        if dtype == "bool" and bytes(data).translate(None, b"\0\1"):
            raise InvalidMessage(f"tensor #{i} ({name!r}) is bool but holds bytes other than 0, 1")
        records.append(TensorRecord(name, dtype, tuple(shape), data))
        offset = start + nbytes
    if offset != size:
        raise InvalidMessage(f"payload has {size - offset} bytes after the last tensor")
    return tuple(records)


# ---------------------------------------------------------------- helpers


def _tree_digest(size: int, hash_range: Callable[[int, int], bytes]) -> bytes:
    ranges = [(lo, min(lo + CHUNK_SIZE, size)) for lo in range(0, size, CHUNK_SIZE)]
    threads = min(len(ranges), _cpu_count(), _MAX_HASH_THREADS)
    if len(ranges) >= _PARALLEL_MIN_CHUNKS and threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            digests = list(pool.map(lambda r: hash_range(*r), ranges))
    else:
        digests = [hash_range(lo, hi) for lo, hi in ranges]
    root = hashlib.sha256(size.to_bytes(8, "big"))
    for d in digests:
        root.update(d)
    return root.digest()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN
