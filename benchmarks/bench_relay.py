"""What a circuit relay costs: update transfers and round time, direct vs through a relay member.

Transfers: three OS processes on 127.0.0.1, the relay member R (p2pfl.net.relay.RosterRelay),
the destination A (listens, so it can be reached directly too, and holds a reservation on R)
and the sender B (this process). B sends a 10 MB and a 100 MB update to A the daemon's way
(`transfer.send`: header, 1 MiB chunks, SHA-256 checked, acked), once over a direct connection
and once over a relayed one (Noise + Yamux end to end, inside a Yamux stream of each leg's own
Noise + Yamux connection); best of `--reps` each, same run.

Rounds: real `p2pfl node` consortia of 3 (complete graph, MLP 1024-1024 on digits shards, one
local step, so that the 4.5 MB updates, not training, make the round): all direct;
hospital-3 outbound through hospital-1; hospital-2 and hospital-3 both outbound through
hospital-1 (so everything between them is relayed). Each
set-up runs `--repeats` times, interleaved; printed: each run's median round time (round 0
excluded) and the median of those, with its ratio to all direct.
Usage: python benchmarks/bench_relay.py [--reps 3] [--rounds 10] [--repeats 3] [--skip-rounds]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

SIZES_MB = (10, 100)
SEEDS = {"a": 2, "b": 3, "r": 1}
HIDDEN, STEPS, BATCH = 1024, 1, 64


def _key(name: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(random.Random(SEEDS[name]).randbytes(32))


def _roster(r_port: int):
    """R direct, A through R (A also listens, for the direct comparison), B direct (dials only)."""
    from p2pfl.protocol.identity import peer_id_of
    from p2pfl.protocol.roster import Member, Roster

    ids = {n: peer_id_of(_key(n)) for n in SEEDS}
    at = f"/ip4/127.0.0.1/tcp/{r_port}"
    return Roster([Member("r", ids["r"], (at,)), Member("b", ids["b"], ("/ip4/127.0.0.1/tcp/1",)),
                   Member("a", ids["a"], (f"{at}/p2p/{ids['r']}/p2p-circuit",))])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _serve(role: str, r_port: int, a_port: int) -> None:
    """Run R (role "r") or A (role "a") until killed; print a line once ready."""
    import multiaddr
    from libp2p.custom_types import TProtocol

    from p2pfl.net import transfer
    from p2pfl.net.host import PROTOCOL, make_host, quiet_libp2p_logs
    from p2pfl.net.relay import Relaying

    quiet_libp2p_logs()
    roster = _roster(r_port)
    me = roster.by_name(role)
    host = make_host(_key(role), allowed=set(roster.peer_ids))

    async def handler(stream) -> None:
        await transfer.receive(stream, 1 << 31, transfer.Timeouts())
        await transfer.reply(stream, transfer.Ack.ACCEPTED, "", transfer.Timeouts())
        await stream.close()

    host.set_stream_handler(TProtocol(PROTOCOL), handler)
    relaying = Relaying(host, roster, me.peer_id)
    port = r_port if role == "r" else a_port
    async with host.run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]), trio.open_nursery() as n:
        await n.start(relaying.serve, role == "r", role == "a")
        if role == "a":
            while not relaying.reserved.get(roster.by_name("r").peer_id):
                await trio.sleep(0.05)
        print("ready", flush=True)
        await trio.sleep_forever()


async def time_transfers(r_port: int, a_port: int, reps: int) -> dict[tuple[str, int], float]:
    """Best seconds per (path, MB) of B's updates to A, direct and relayed."""
    from libp2p.peer.peerinfo import PeerInfo

    from p2pfl.net import transfer
    from p2pfl.net.host import PROTOCOL, make_host, multiaddrs, peer_id, quiet_libp2p_logs
    from p2pfl.net.relay import Relaying

    quiet_libp2p_logs()
    roster = _roster(r_port)
    a = roster.by_name("a")
    host = make_host(_key("b"), allowed=set(roster.peer_ids))
    relaying = Relaying(host, roster, roster.by_name("b").peer_id)
    best: dict[tuple[str, int], float] = {}
    async with host.run([]):
        for path in ("direct", "relayed"):
            for conn in list(host.get_network().get_connections(peer_id(a.peer_id))):
                await conn.close()
            if path == "direct":
                await host.connect(PeerInfo(peer_id(a.peer_id), multiaddrs([f"/ip4/127.0.0.1/tcp/{a_port}"])))
            else:
                await relaying.connect(a, 10)
            for mb in SIZES_MB:
                payload = bytes(range(256)) * (mb * 1_000_000 // 256)
                for _ in range(reps):
                    start = time.perf_counter()
                    stream = await host.new_stream(peer_id(a.peer_id), [PROTOCOL])
                    await transfer.send(stream, 0, payload, transfer.Timeouts())
                    await stream.close()
                    seconds = time.perf_counter() - start
                    best[(path, mb)] = min(best.get((path, mb), float("inf")), seconds)
        await host.close()
    return best


def transfers(reps: int) -> None:
    r_port, a_port = _free_port(), _free_port()
    procs = []
    try:
        for role in ("r", "a"):
            proc = subprocess.Popen([sys.executable, __file__, "--serve", role, str(r_port), str(a_port)],
                                    stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"the {role} process did not start")
        best = trio.run(time_transfers, r_port, a_port, reps)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    print(f"{'update':>8} {'direct s':>9} {'MB/s':>6} {'relayed s':>10} {'MB/s':>6} {'ratio':>6}")
    for mb in SIZES_MB:
        d, r = best[("direct", mb)], best[("relayed", mb)]
        print(f"{mb:>5} MB {d:>9.3f} {mb / d:>6.0f} {r:>10.3f} {mb / r:>6.0f} {d / r:>5.2f}x", flush=True)
    print("ratio = relayed throughput / direct throughput (best of", reps, "each)")


def consortium_rounds(folder: Path, outbound: tuple[str, ...], rounds: int) -> list[float]:
    """Round seconds (round 0 excluded) of a 3-node consortium, `outbound` through hospital-1."""
    from plans import edit_plans

    from p2pfl.demo import DemoOptions, setup
    from p2pfl.files.roster_file import load_roster, write_roster
    from p2pfl.net.checkpoint import read_metrics
    from p2pfl.protocol.roster import Member, Roster
    from p2pfl.settings.toml_out import dumps_document
    from p2pfl.tomlio import read_toml

    names = [f"hospital-{i + 1}" for i in range(3)]
    opt = DemoOptions(nodes=3, rounds=rounds, dataset="digits", partition="iid", topology="complete",
                      folder=folder, round_timeout=60.0)
    configs = dict(zip(names, setup(folder, names, opt), strict=True))
    roster = load_roster(folder / "roster.toml")
    hop = roster.by_name("hospital-1")
    via = (f"{hop.addresses[0]}/p2p/{hop.peer_id}/p2p-circuit",)
    write_roster(folder / "roster.toml", Roster([Member(m.name, m.peer_id, via) if m.name in outbound else m
                                                 for m in roster]), overwrite=True)
    for name, config in configs.items():
        raw = read_toml(config)
        raw["node"].update(relay=bool(outbound) and name == "hospital-1",
                           reachability="outbound" if name in outbound else "direct")
        config.write_text(dumps_document(raw))
    edit_plans(configs.values(), {"model": {"hidden": [HIDDEN, HIDDEN]},
                                  "training": {"local_steps": STEPS, "batch_size": BATCH}})
    procs = [subprocess.Popen([sys.executable, "-m", "p2pfl", "node", "--config", str(c)],
                              stdout=subprocess.DEVNULL, stderr=(c.parent / "node.log").open("w"))
             for c in configs.values()]
    if any(p.wait(timeout=600) for p in procs):
        raise SystemExit(f"a node failed; see {folder}/*/node.log")
    return [r["seconds"] for n in names for r in read_metrics(folder / n / "state")[1:]]


def rounds_table(rounds: int, repeats: int) -> None:
    from p2pfl.learning.models import build_model
    from p2pfl.learning.params import num_params

    base = Path(tempfile.mkdtemp(prefix="p2pfl-bench-relay-"))
    runs = {"all direct": (), "hospital-3 relayed": ("hospital-3",),
            "hospital-2 and -3 relayed": ("hospital-2", "hospital-3")}
    medians: dict[str, list[float]] = {label: [] for label in runs}
    for repeat in range(repeats):
        for i, (label, outbound) in enumerate(runs.items()):
            folder = base / f"{repeat}-{i}"
            folder.mkdir()
            medians[label].append(statistics.median(consortium_rounds(folder, outbound, rounds)))
    mb = num_params(build_model("mlp", 64, 10, (HIDDEN, HIDDEN))) * 4 / 1e6
    print(f"3 nodes, complete graph, MLP {HIDDEN}-{HIDDEN} on digits ({mb:.1f} MB updates), {STEPS} "
          f"local step(s), {rounds} rounds (round 0 excluded), {repeats} runs each; folders in {base}")
    direct = statistics.median(medians["all direct"])
    for label, values in medians.items():
        median = statistics.median(values)
        runs_ms = ", ".join(f"{v * 1000:.0f}" for v in values)
        print(f"{label:<26} median round {median * 1000:7.1f} ms ({runs_ms})  "
              f"{median / direct:5.2f}x all direct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-rounds", action="store_true", help="transfers only")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        role, r_port, a_port = args.serve
        trio.run(_serve, role, int(r_port), int(a_port))
        return
    transfers(args.reps)
    if not args.skip_rounds:
        rounds_table(args.rounds, args.repeats)


if __name__ == "__main__":
    main()
