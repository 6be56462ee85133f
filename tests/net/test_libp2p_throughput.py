"""The transfer speed-ups for py-libp2p 0.8.1 (p2pfl/net/libp2p_fixes/throughput.py).

The canary fails once the library's patched-around code changes: then re-measure with
benchmarks/bench_transfer.py and update the fingerprints or delete the patches. The other tests
check that bytes still arrive intact and in order through the patched stack, on 127.0.0.1.
"""

from __future__ import annotations

import hashlib

import multiaddr
import numpy as np
import trio
import trio.testing
from libp2p.custom_types import TProtocol
from libp2p.io.trio import TrioTCPStream
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.stream_muxer.yamux import yamux
from strangers import seeded_key

from p2pfl.net import transfer
from p2pfl.net.host import PROTOCOL, make_host, quiet_libp2p_logs
from p2pfl.net.libp2p_fixes import throughput

WAIT = 60.0


def test_canary_library_unchanged():
    assert throughput.library_changed() == [], (
        "py-libp2p changed where libp2p_fixes/throughput.py patches it: re-measure "
        "(benchmarks/bench_transfer.py), then update LIBRARY_SOURCES or drop the patch")


def test_make_host_applies_the_patches_once():
    make_host(seeded_key(1))
    make_host(seeded_key(2))
    assert yamux.MAX_MESSAGE_SIZE == throughput.FRAME
    assert TrioTCPStream.read is throughput._buffered_read
    assert throughput.apply_throughput() is True


def test_buffered_reads_hand_out_every_byte_in_order():
    size = 3 * throughput.READ_AHEAD + 123
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    sizes = [0, 2, 65_519, 1, None, 17, 300_000, 2, None]  # Noise asks 2, then the record length

    async def run() -> tuple[bytes, list[bytes]]:
        left, right = trio.testing.memory_stream_pair()
        stream = TrioTCPStream(right)
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:
            async def feed() -> None:
                for start in range(0, len(data), 100_000):  # pieces that do not match the reads
                    await left.send_all(data[start : start + 100_000])
                    await trio.sleep(0)
                await left.send_eof()
            nursery.start_soon(feed)
            for n in sizes:
                got.append(await stream.read(n))
            while chunk := await stream.read(65_536):
                got.append(chunk)
        return b"".join(got), got

    joined, reads = trio.run(run)
    assert joined == data
    assert reads[0] == b"" and len(reads[1]) == 2 and len(reads[2]) <= 65_519
    assert all(n is None or len(r) <= n for n, r in zip(sizes, reads, strict=False))


def test_concurrent_readers_never_reorder_bytes():
    """Two tasks reading at once (the library has one reader per connection; this bounds the
    damage if that changes): what they get, put back in the order they got it, is the stream."""
    data = bytes(range(256)) * 4096  # 1 MiB

    async def run() -> bytes:
        left, right = trio.testing.memory_stream_pair()
        stream = TrioTCPStream(right)
        log: list[bytes] = []

        async def reader(n: int) -> None:
            while chunk := await stream.read(n):
                log.append(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, 2)
            nursery.start_soon(reader, 70_000)
            for start in range(0, len(data), 50_000):
                await left.send_all(data[start : start + 50_000])
                await trio.sleep(0.001)
            await left.send_eof()
        return b"".join(log)

    assert trio.run(run) == data


def test_a_large_update_crosses_the_patched_stack_intact_beside_small_streams():
    """An 8 MB update (many 1 MiB Yamux frames, each 17 Noise records in one socket write) and
    small streams on the same connection at the same time; every byte checked by SHA-256."""
    quiet_libp2p_logs()
    payload = np.random.default_rng(1).integers(0, 256, 8_000_003, dtype=np.uint8).tobytes()
    timeouts = transfer.Timeouts(connect=10, chunk=10, ack=10)
    received: list[bytes] = []

    async def run() -> list[str]:
        server, client = make_host(seeded_key(1)), make_host(seeded_key(2))

        async def handler(stream) -> None:
            _, body = await transfer.receive(stream, 1 << 30, timeouts)
            received.append(hashlib.sha256(body).digest())
            await transfer.reply(stream, transfer.Ack.ACCEPTED, "", timeouts)
            await stream.close()

        server.set_stream_handler(TProtocol(PROTOCOL), handler)
        loopback = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        acks: list[str] = []
        with trio.fail_after(WAIT):
            async with server.run(listen_addrs=loopback), client.run(listen_addrs=loopback):
                info = info_from_p2p_addr(server.get_addrs()[0])
                await client.connect(info)

                async def send(body: bytes) -> None:
                    stream = await client.new_stream(info.peer_id, [PROTOCOL])
                    acks.append((await transfer.send(stream, 1, body, timeouts)).name)
                    await stream.close()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send, payload)
                    for k in range(5):
                        nursery.start_soon(send, bytes([k]) * 1000)
        return acks

    assert trio.run(run) == ["ACCEPTED"] * 6
    small = {hashlib.sha256(bytes([k]) * 1000).digest() for k in range(5)}
    expected = {hashlib.sha256(payload).digest()} | small
    assert set(received) == expected
