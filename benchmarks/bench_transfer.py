"""Time to deliver a 10 MB and a 100 MB model update between two processes: libp2p vs raw TCP.

Both sides are separate OS processes on 127.0.0.1. The p2pfl path is the daemon's: a Noise +
Yamux libp2p stream per update (with p2pfl.net.libp2p_fixes), our framing (header with the size,
a timeout on every MiB read and written, an ack). The baseline is a plain trio TCP
socket moving the same bytes with a length prefix and an ack, no encryption, no hash. Printed:
best-of-N seconds and MB/s of each, and the ratio (target: p2pfl >= 0.3x raw TCP throughput).
Usage: python benchmarks/bench_transfer.py [--reps 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import trio

SIZES_MB = (10, 100)


async def _serve_libp2p() -> None:
    import multiaddr
    from libp2p.custom_types import TProtocol

    from p2pfl.net import transfer
    from p2pfl.net.host import PROTOCOL, make_host, quiet_libp2p_logs
    from p2pfl.protocol.identity import generate_key

    quiet_libp2p_logs()
    host = make_host(generate_key())

    async def handler(stream) -> None:
        await transfer.receive(stream, 1 << 31, transfer.Timeouts())
        await transfer.reply(stream, transfer.Ack.ACCEPTED, "", transfer.Timeouts())
        await stream.close()

    host.set_stream_handler(TProtocol(PROTOCOL), handler)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        print(str(host.get_addrs()[0]), flush=True)
        await trio.sleep_forever()


async def _serve_tcp() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        header = await _read(stream, 8)
        await _read(stream, int.from_bytes(header, "big"))
        await stream.send_all(b"\x00")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(handler, listeners)


async def _read(stream: trio.SocketStream, n: int) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


async def time_libp2p(addr: str, payload: bytes, reps: int) -> float:
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from p2pfl.net import transfer
    from p2pfl.net.host import PROTOCOL, make_host, quiet_libp2p_logs
    from p2pfl.protocol.identity import generate_key

    quiet_libp2p_logs()
    host = make_host(generate_key())
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await host.connect(info)
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            stream = await host.new_stream(info.peer_id, [PROTOCOL])
            await transfer.send(stream, 0, payload, transfer.Timeouts())
            await stream.close()
            best = min(best, time.perf_counter() - start)
        return best


async def time_tcp(port: int, payload: bytes, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(len(payload).to_bytes(8, "big"))
        view = memoryview(payload)
        for i in range(0, len(view), 1 << 20):
            await stream.send_all(view[i : i + (1 << 20)])
        await _read(stream, 1)
        await stream.aclose()
        best = min(best, time.perf_counter() - start)
    return best


def _server(kind: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--serve", choices=["libp2p", "tcp"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve_libp2p if args.serve == "libp2p" else _serve_tcp)
        return
    p2p_proc, addr = _server("libp2p")
    tcp_proc, port = _server("tcp")
    try:
        print(f"{'update':>8} {'raw TCP s':>10} {'MB/s':>8} {'p2pfl s':>9} {'MB/s':>8} {'ratio':>7}")
        for mb in SIZES_MB:
            payload = bytes(range(256)) * (mb * 1_000_000 // 256)
            raw = trio.run(time_tcp, int(port), payload, args.reps)
            p2p = trio.run(time_libp2p, addr, payload, args.reps)
            print(f"{mb:>5} MB {raw:>10.3f} {mb / raw:>8.0f} {p2p:>9.3f} {mb / p2p:>8.0f} {raw / p2p:>6.2f}x",
                  flush=True)
        print("ratio = p2pfl throughput / raw TCP throughput (target >= 0.3x)")
    finally:
        for proc in (p2p_proc, tcp_proc):
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
