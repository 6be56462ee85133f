"""Bulk-transfer speed of py-libp2p 0.8.1 over TCP + Noise + Yamux, three small patches.

Why: a 100 MB update moved at 0.1x of a raw trio socket on loopback, CPU-bound on both sides
by per-frame Python work: 64 KiB Yamux frames, each split into two Noise records (65,519 B
plaintext limit), each record read with two exact-size `recv` calls and written with its own
`send_all`, every one a trio checkpoint and a lock round trip.

What (applied once per process by `apply_throughput`, before any connection):
1. Yamux DATA frames up to `FRAME` (1 MiB) instead of 64 KiB. A 0.8.1 receiver accepts DATA
   frames up to its 16 MiB window bound, and a sender never exceeds the window its peer
   granted, so the wire stays valid Yamux. Cost: one frame holds the connection ~1-2 ms.
2. Buffered TCP reads: `TrioTCPStream.read(n)` takes up to `READ_AHEAD` bytes from the
   socket and serves the Noise reader's 2-byte length and record reads from that buffer.
   Bytes come out in order; the stock read (lock, error mapping, EOF) is called underneath.
3. One socket write per Noise transport write: the same ChaCha20-Poly1305 records, same
   nonces, same 2-byte length prefixes, concatenated into one `send_all`.
Noise itself is untouched: handshake, identity signatures, records of <= 65,519 B plaintext.
`benchmarks/bench_transfer.py` measures the effect.

How to drop it: `tests/net/test_libp2p_throughput.py::test_canary_library_unchanged` fails
once any patched library function's source differs from 0.8.1's (`LIBRARY_SOURCES`); then the
patches are skipped at run time (stock speed, still correct) until someone re-measures and
either updates the fingerprints or deletes this module.
"""

from __future__ import annotations

import hashlib
import inspect
import logging

import libp2p.stream_muxer.yamux.yamux as yamux
import trio
from libp2p.io.trio import TrioTCPStream
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH, BaseNoiseMsgReadWriter, NoiseTransportReadWriter

FRAME = 1 << 20  # Yamux DATA frame bytes (stock: 64 KiB)
READ_AHEAD = 1 << 18  # bytes asked of the socket per read (stock: what the caller asked)
STOCK_FRAME = 64 * 1024

# sha256 (12 hex digits) of the 0.8.1 source of each function these patches depend on
LIBRARY_SOURCES = {
    "TrioTCPStream.read": "c606ac89ec9d",
    "BaseNoiseMsgReadWriter.write_msg": "00818920318f",
    "YamuxStream.write": "d87f74dfb53a",
}

log = logging.getLogger(__name__)
_stock_read = TrioTCPStream.read
_stock_write_msg = BaseNoiseMsgReadWriter.write_msg


def _library_functions() -> dict[str, object]:
    return {
        "TrioTCPStream.read": _stock_read,
        "BaseNoiseMsgReadWriter.write_msg": _stock_write_msg,
        "YamuxStream.write": yamux.YamuxStream.write,
    }


def source_fingerprints() -> dict[str, str]:
    """The current library's source fingerprint of each function the patches depend on."""
    return {name: hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:12]
            for name, fn in _library_functions().items()}


def library_changed() -> list[str]:
    """Names of patched-around functions whose source is not 0.8.1's (empty: patches apply)."""
    current = source_fingerprints()
    changed = [name for name, digest in LIBRARY_SOURCES.items() if current[name] != digest]
    if yamux.MAX_MESSAGE_SIZE not in (STOCK_FRAME, FRAME):
        changed.append("yamux.MAX_MESSAGE_SIZE")
    return changed


def apply_throughput() -> bool:
    """Apply the three patches (idempotent); False, with one warning, if the library changed."""
    if TrioTCPStream.read is _buffered_read:
        return True
    changed = library_changed()
    if changed:
        log.warning("py-libp2p differs from 0.8.1 in %s: transfer speed-ups not applied",
                    ", ".join(changed))
        return False
    yamux.MAX_MESSAGE_SIZE = FRAME
    TrioTCPStream.read = _buffered_read
    NoiseTransportReadWriter.write_msg = _write_records
    return True


def _take(stream: TrioTCPStream, n: int | None) -> bytes | None:
    """Up to n buffered bytes (all with None), or None when the buffer is empty."""
    buffered = stream.__dict__.get("_p2pfl_buffer")
    if not buffered:
        return None
    pos = stream._p2pfl_pos
    if n is None or n >= len(buffered) - pos:
        stream._p2pfl_buffer = b""
        return buffered[pos:] if pos else buffered
    stream._p2pfl_pos = pos + n
    return buffered[pos : pos + n]


async def _buffered_read(self: TrioTCPStream, n: int | None = None) -> bytes:
    if n == 0:
        return b""
    data = _take(self, n)
    if data is not None:
        return data
    fill = self.__dict__.get("_p2pfl_fill") or self.__dict__.setdefault("_p2pfl_fill", trio.Lock())
    async with fill:  # one task fills the buffer at a time; the others then take from it
        data = _take(self, n)
        if data is not None:
            return data
        data = await _stock_read(self, max(n or 0, READ_AHEAD))
        if n is None or len(data) <= n:
            return data
        self._p2pfl_buffer, self._p2pfl_pos = data, n
        return data[:n]


async def _write_records(self: NoiseTransportReadWriter, msg: bytes, prefix_encoded: bool = False) -> None:
    if prefix_encoded or len(msg) <= MAX_PLAINTEXT_LENGTH:
        await _stock_write_msg(self, msg, prefix_encoded)
        return
    view = memoryview(msg)
    parts: list[bytes] = []
    for start in range(0, len(view), MAX_PLAINTEXT_LENGTH):
        record = self.encrypt(bytes(view[start : start + MAX_PLAINTEXT_LENGTH]))
        parts += (len(record).to_bytes(2, "big"), record)
    await self.read_writer.read_write_closer.write(b"".join(parts))
