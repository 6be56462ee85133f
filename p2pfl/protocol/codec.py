"""Encode and decode signed model updates: a msgpack header and raw tensor bytes, nothing executable.

Layout of one message (all offsets from the first byte):

    0   4 bytes   MAGIC
    4   4 bytes   header length H, big-endian
    8   64 bytes  Ed25519 signature over SIGNING_CONTEXT + header
    72  H bytes   header: a msgpack map (see HEADER_KEYS)
        zeros up to the next multiple of ALIGN: the payload starts there
        payload: the tensors in header order, raw little-endian bytes, each starting at a
        multiple of ALIGN from the payload start, zeros in between, nothing after the last

The header carries `payload_digest`, a SHA-256 tree over the payload (see `payload_digest`),
so the signature covers every byte. Decoded tensors are views into the received buffer.
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
from typing import Any

import msgpack
import numpy as np
import torch

from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
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
MAX_HEADER_SIZE = 16 << 20
MAX_TENSORS = 100_000
MAX_NDIM = 16
MAX_NAME_LENGTH = 512
MAX_METRICS = 64
MAX_UINT63 = (1 << 63) - 1

HEADER_KEYS = (
    "version",
    "sender",
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
_PARALLEL_MIN_CHUNKS = 8
_MAX_HASH_THREADS = 8
_HEX = frozenset("0123456789abcdef")


# ---------------------------------------------------------------- encode


def encode(
    key: Ed25519PrivateKey,
    *,
    round: int,
    fingerprint: str,
    num_samples: int,
    weight: float,
    tensors: Mapping[str, torch.Tensor],
    metrics: Mapping[str, float] | None = None,
    encoding: str = "dense",
) -> memoryview:
    """Build and sign an update from `tensors` (in mapping order); the sender is `key`'s peer ID.

    `encoding` says how the tensors represent the model: "dense" (the parameters themselves),
    or a compression spec (see p2pfl.gossip.compression) whose parts the tensors are.

    Returns a writable bytes-like buffer holding the whole message (the tensor bytes are
    copied once). Raises ValueError for anything `decode` would reject.
    """
    header, payload = _prepare(round, fingerprint, num_samples, weight, tensors, metrics, key, encoding)
    return pack_signed(header, payload, key)


def encode_parts(
    key: Ed25519PrivateKey,
    *,
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
    header, payload = _prepare(round, fingerprint, num_samples, weight, tensors, metrics, key, encoding)
    return _frame(header, payload, key, copy=False)


def pack_signed(
    header: dict[str, Any], payload: list[np.ndarray], key: Ed25519PrivateKey
) -> memoryview:
    """Frame and sign a header map and payload arrays (uint8), filling in `payload_digest`.

    Low level, for tests and tools: it does not check the header; use `encode` for updates.
    """
    return _frame(header, payload, key, copy=True)[0]


def _prepare(
    round: int,
    fingerprint: str,
    num_samples: int,
    weight: float,
    tensors: Mapping[str, torch.Tensor],
    metrics: Mapping[str, float] | None,
    key: Ed25519PrivateKey,
    encoding: str = "dense",
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The checked header map and the tensors' bytes, for `encode` and `encode_parts`."""
    sources = [_tensor_source(name, t) for name, t in tensors.items()]
    header: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "sender": peer_id_of(key),
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
    except InvalidMessage as e:
        raise ValueError(f"cannot encode this update: {e}") from None
    header_size = len(_pack(header))
    if header_size > MAX_HEADER_SIZE:
        raise ValueError(f"cannot encode this update: the header would be {header_size} bytes")
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


def decode(data: bytes | bytearray | memoryview, max_size: int = MAX_MESSAGE_SIZE) -> ModelUpdate:
    """Parse, check and verify a received update; any problem raises InvalidMessage.

    The signature must verify against the key inside the sender's peer ID (BadSignature
    otherwise) and the payload must match the signed digest. Tensors are views of `data`.
    """
    update = parse(data, max_size)
    if not signature_ok(update):
        raise BadSignature(f"signature does not verify against sender {update.sender}")
    if not payload_ok(update):
        raise InvalidMessage("payload does not match the signed digest: tensor data was altered")
    return update


def parse(data: bytes | bytearray | memoryview, max_size: int = MAX_MESSAGE_SIZE) -> ModelUpdate:
    """Check the structure of a message WITHOUT verifying the signature or the payload digest.

    For tools such as `inspect`; a node must use `decode`.
    """
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
    header_bytes = bytes(view[PREFIX_SIZE:header_end])
    fields = _check_header(_unpack(header_bytes))
    if any(view[header_end:payload_start]):
        raise InvalidMessage("padding between header and payload is not zero")
    payload = view[payload_start:]
    records = _records(fields["tensors"], payload)
    return ModelUpdate(
        version=fields["version"],
        sender=fields["sender"],
        round=fields["round"],
        fingerprint=fields["fingerprint"],
        num_samples=fields["num_samples"],
        weight=fields["weight"],
        encoding=fields["encoding"],
        metrics=fields["metrics"],
        tensors=records,
        payload_digest=fields["payload_digest"],
        signature=bytes(view[8:PREFIX_SIZE]),
        header=header_bytes,
        payload=payload,
    )


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
    try:
        return msgpack.unpackb(
            header_bytes,
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_map_without_duplicates,
        )
    except InvalidMessage:
        raise
    except Exception as e:  # msgpack raises many types; every one means a malformed header
        raise InvalidMessage(f"header is not valid msgpack: {type(e).__name__}: {e}") from None


def _map_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[Any] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidMessage(f"header has a map with the key {_short(dup)} twice")
    return out


def _check_header(header: object) -> dict[str, Any]:
    """Type- and range-check every header field; returns the header map."""
    if not isinstance(header, dict):
        raise InvalidMessage(f"header is {_a(header)}, not a map")
    if "version" in header and header["version"] != FORMAT_VERSION:
        raise InvalidMessage(
            f"unsupported format version {_short(header['version'])} (expected {FORMAT_VERSION})"
        )
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise InvalidMessage(f"header is missing field(s): {', '.join(missing)}")
    unknown = sorted((k for k in header if k not in HEADER_KEYS), key=repr)
    if unknown:
        raise InvalidMessage(f"header has unknown field(s): {', '.join(map(_short, unknown))}")
    _expect_int(header, "version", 0, MAX_UINT63)
    sender = header["sender"]
    if type(sender) is not str:
        raise InvalidMessage(f"sender is {_a(sender)}, not a string")
    try:
        public_key_from_peer_id(sender)
    except InvalidPeerId as e:
        raise InvalidMessage(f"sender: {e}") from None
    _expect_int(header, "round", 0, MAX_UINT63)
    fp = header["fingerprint"]
    if type(fp) is not str or len(fp) != 64 or not _HEX.issuperset(fp):
        raise InvalidMessage(f"fingerprint {_short(fp)} is not 64 lowercase hex characters")
    _expect_int(header, "num_samples", 0, MAX_UINT63)
    weight = header["weight"]
    if type(weight) is not float or not math.isfinite(weight) or weight < 0:
        raise InvalidMessage(f"weight {_short(weight)} is not a finite float >= 0")
    encoding = header["encoding"]
    if type(encoding) is not str or not 0 < len(encoding) <= MAX_ENCODING_LENGTH:
        raise InvalidMessage(f"encoding {_short(encoding)} is not a string of 1 to "
                             f"{MAX_ENCODING_LENGTH} characters")
    _check_metrics(header["metrics"])
    _check_tensor_table(header["tensors"])
    digest = header["payload_digest"]
    if type(digest) is not bytes or len(digest) != DIGEST_SIZE:
        raise InvalidMessage(f"payload_digest {_short(digest)} is not {DIGEST_SIZE} bytes")
    return header


def _expect_int(header: dict[str, Any], key: str, lo: int, hi: int) -> None:
    value = header[key]
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidMessage(f"{key} {_short(value)} is not an integer in [{lo}, {hi}]")


def _check_metrics(metrics: object) -> None:
    if type(metrics) is not dict:
        raise InvalidMessage(f"metrics is {_a(metrics)}, not a map")
    if len(metrics) > MAX_METRICS:
        raise InvalidMessage(f"metrics has {len(metrics)} entries (at most {MAX_METRICS})")
    for k, v in metrics.items():
        if type(k) is not str or not 0 < len(k) <= MAX_NAME_LENGTH:
            raise InvalidMessage(f"metric name {_short(k)} is not a non-empty short string")
        if type(v) is not float:
            raise InvalidMessage(f"metric {k!r} is {_a(v)}, not a float")


def _check_tensor_table(table: object) -> None:
    if type(table) is not list:
        raise InvalidMessage(f"tensors is {_a(table)}, not an array")
    if len(table) > MAX_TENSORS:
        raise InvalidMessage(f"{len(table)} tensors (at most {MAX_TENSORS})")
    seen: set[str] = set()
    for i, entry in enumerate(table):
        if type(entry) is not list or len(entry) != 3:
            raise InvalidMessage(f"tensor #{i} is not a [name, dtype, shape] array")
        name, dtype, shape = entry
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise InvalidMessage(f"tensor #{i} name {_short(name)} is not a non-empty short string")
        where = f"tensor #{i} ({name!r})"
        if name in seen:
            raise InvalidMessage(f"{where}: the name appears twice")
        seen.add(name)
        if type(dtype) is not str or dtype not in DTYPES:
            raise InvalidMessage(
                f"{where}: dtype {_short(dtype)} is not one of {', '.join(DTYPES)}"
            )
        if type(shape) is not list:
            raise InvalidMessage(f"{where}: shape is {_a(shape)}, not an array")
        if len(shape) > MAX_NDIM:
            raise InvalidMessage(f"{where}: {len(shape)} dimensions (at most {MAX_NDIM})")
        for d in shape:
            if type(d) is not int or d < 0:
                raise InvalidMessage(f"{where}: dimension {_short(d)} is not an integer >= 0")
        if math.prod(max(d, 1) for d in shape) > MAX_UINT63:  # strides must fit in int64
            raise InvalidMessage(f"{where}: shape {_short(shape)} is too large")


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


def _a(value: object) -> str:
    """'a list', 'an int': how a wrong value's type reads in an error."""
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
