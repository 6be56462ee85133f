"""Failures and hostile input against real node processes: the members go on."""

from __future__ import annotations

import math
import signal
import struct

import multiaddr
import trio
from hostile import header_bomb

from p2pfl.learning.models import build_model
from p2pfl.learning.params import fingerprint
from p2pfl.net import transfer
from p2pfl.net.host import PROTOCOL, make_host, peer_id
from p2pfl.protocol.codec import encode
from p2pfl.protocol.consortium import consortium_of

ROUNDS = 5
TIMEOUT = 2.0  # round deadline of these consortia, seconds


def _rounds(c, name):
    return [r["round"] for r in c.metrics(name)]


def test_killed_node_others_finish_and_restarted_node_resumes(consortium):
    c = consortium(nodes=4, rounds=8, round_timeout=TIMEOUT)
    done_before = c.kill_after("hospital-2", 2)
    # neighbours 1 and 3 go on without it at the deadline
    c.wait_for(lambda: any("hospital-2" in r["missing"] for r in c.metrics("hospital-1")),
               what="hospital-1 to go on without hospital-2")
    c.start("hospital-2")
    assert c.wait() == {name: 0 for name in c.names}
    for name in c.names:
        assert _rounds(c, name)[-1] == 7, name
    log = c.log("hospital-2")
    assert f"start_round={done_before}" in log  # resumed from its checkpoint, not from zero
    assert "event=done round=8" in log


def test_stopped_node_nobody_waits_past_the_deadline(consortium):
    c = consortium(nodes=4, rounds=ROUNDS, round_timeout=TIMEOUT)
    c.start()
    c.wait_for(lambda: len(c.metrics("hospital-3")) >= 1, what="hospital-3 to finish a round")
    c.signal("hospital-3", signal.SIGSTOP)
    frozen_at = len(c.metrics("hospital-3"))
    others = [n for n in c.names if n != "hospital-3"]
    assert c.wait(*others) == {name: 0 for name in others}
    # everyone else finished while hospital-3 stayed frozen
    assert len(c.metrics("hospital-3")) == frozen_at
    for name in ("hospital-2", "hospital-4"):
        assert _rounds(c, name)[-1] == ROUNDS - 1
        assert any("hospital-3" in r["missing"] for r in c.metrics(name))


async def _client(key, target_addr: str, sends):
    """Connect to a node as `key` and run `sends(host, pid)`; returns what it returns."""
    host = make_host(key)
    maddr = multiaddr.Multiaddr(target_addr)
    pid = peer_id(target_addr.split("/p2p/")[1])
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        from libp2p.peer.peerinfo import info_from_p2p_addr

        with trio.fail_after(20):
            await host.connect(info_from_p2p_addr(maddr))
        return await sends(host, pid)


async def _open(host, pid):
    with trio.fail_after(10):
        return await host.new_stream(pid, [PROTOCOL])


async def _try_send(host, pid, round, data):
    """Send an update; returns the receiver's refusal ("rejected: why") or another error's
    type, or None if the node accepted the update."""
    stream = await _open(host, pid)
    try:
        await transfer.send(stream, round, data, transfer.Timeouts(connect=5, chunk=5, ack=5))
        return None
    except transfer.Refused as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__
    finally:
        with trio.move_on_after(1):
            try:
                await stream.reset()
            except Exception:  # noqa: BLE001
                pass


def _model_tensors(nan: bool = False):
    model = build_model("mlp", 30, 2, (32,), seed=0)
    tensors = {k: v.detach().clone() for k, v in model.named_parameters()}
    if nan:
        tensors["0.weight"][0, 0] = math.nan
    return tensors, fingerprint(model)


def test_member_sending_bad_updates_is_rejected_and_the_node_keeps_running(consortium):
    # hospital-4 is in the roster but its process is this test: it attacks hospital-1
    c = consortium(nodes=4, rounds=ROUNDS, round_timeout=TIMEOUT)
    c.configure("gossip", "min_peers = 0")  # hospital-4 never says hello: start without it
    c.start("hospital-1", "hospital-2", "hospital-3")
    c.wait_for(lambda: "event=listening" in c.log("hospital-1"), what="hospital-1 to listen")
    key = c.key("hospital-4")
    last = ROUNDS - 1
    tensors, fp = _model_tensors()
    nan_tensors, _ = _model_tensors(nan=True)
    binding = c.binding("hospital-4")
    good = bytes(encode(key, consortium=binding, round=last, fingerprint=fp, num_samples=1,
                        weight=1.0, tensors=tensors))

    async def attacks(host, pid):
        results = {}
        results["garbage"] = await _try_send(host, pid, last, b"\x93not an update at all" * 100)
        results["fingerprint"] = await _try_send(host, pid, last, bytes(encode(
            key, consortium=binding, round=last, fingerprint="0" * 64, num_samples=1, weight=1.0,
            tensors=tensors)))
        results["nan"] = await _try_send(host, pid, last, bytes(encode(
            key, consortium=binding, round=last, fingerprint=fp, num_samples=1, weight=1.0,
            tensors=nan_tensors)))
        # bound to another consortium (a replay from another consortium or run)
        elsewhere = consortium_of({"roster": [["other", "x"]], "training": {"run": "other"}})
        results["elsewhere"] = await _try_send(host, pid, last, bytes(encode(
            key, consortium=elsewhere, round=last, fingerprint=fp, num_samples=1, weight=1.0,
            tensors=tensors)))
        # three header bombs at once, validly signed
        bombs = []

        async def bomb() -> None:
            bombs.append(await _try_send(host, pid, last, header_bomb(key)))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(bomb)
        results["bombs"] = bombs
        # a header declaring 10 GB
        stream = await _open(host, pid)
        await stream.write(transfer.HEADER.pack(transfer.MAGIC, transfer.VERSION, last, 10 * 10**9))
        with trio.move_on_after(5):
            try:
                results["huge"] = await stream.read(2)
            except Exception as exc:  # noqa: BLE001
                results["huge"] = type(exc).__name__
        # stops mid-payload: announce the good update, send a third, then go away
        stream = await _open(host, pid)
        await stream.write(transfer.pack_header(last, good))
        await stream.write(good[: len(good) // 3])
        await stream.close()
        return results

    results = trio.run(_client, key, c.address("hospital-1"), attacks)
    # the ack comes after the checks and says why (the sender logs it)
    assert results["garbage"].startswith("rejected: ")
    assert results["fingerprint"].startswith("rejected: model fingerprint")
    assert results["nan"].startswith("rejected: ") and "NaN" in results["nan"]
    assert results["elsewhere"].startswith("rejected: consortium") and "roster" in results["elsewhere"]
    assert len(results["bombs"]) == 3 and all(b.startswith("rejected: header") for b in results["bombs"])
    running = ["hospital-1", "hospital-2", "hospital-3"]
    assert c.wait(*running) == {name: 0 for name in running}
    log = c.log("hospital-1")
    rejected = [line for line in log.splitlines() if "sender=hospital-4" in line or "peer=hospital-4" in line]
    text = "\n".join(rejected)
    assert "event=update_rejected" in text and "fingerprint" in text and "NaN" in text
    assert "exceeds the limit" in text
    assert "stream ended after" in text
    assert sum("event=update_rejected" in line for line in rejected) >= 3
    assert _rounds(c, "hospital-1") == list(range(ROUNDS))
    assert all("hospital-4" in r["missing"] for r in c.metrics("hospital-1"))


def test_header_struct_is_21_bytes():
    assert transfer.HEADER.size == struct.calcsize(">4sBQQ") == 21
