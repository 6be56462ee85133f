"""Prometheus metrics of a running node: the counters equal what its metrics.jsonl says."""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


def test_the_counters_equal_the_rows_of_metrics_jsonl(consortium):
    c = consortium(nodes=3, rounds=6, topology="ring", round_timeout=1.0)
    port = _free_port()
    c.configure("node", f'metrics_listen = "127.0.0.1:{port}"', "hospital-1")
    c.configure("gossip", "min_peers = 1")
    c.start("hospital-1", "hospital-2")  # hospital-3 absent: each round waits for its deadline
    matched = []
    end = time.monotonic() + 60
    while len(matched) < 2 and time.monotonic() < end and c.procs["hospital-1"].poll() is None:
        try:
            before = c.metrics("hospital-1")
            seen = _scrape(port)
            after = c.metrics("hospital-1")
        except OSError:  # not listening yet
            time.sleep(0.1)
            continue
        if before == after and len(after) >= 1 and seen["p2pfl_rounds_done_total"] == len(after):
            if not matched or matched[-1][0] != len(after):
                matched.append((len(after), seen, after))
        time.sleep(0.05)
    assert len(matched) >= 2, "no two stable scrapes at different rounds"
    for rounds, seen, rows in matched:
        assert seen["p2pfl_round"] == rows[-1]["round"] + 1
        assert seen["p2pfl_bytes_received_total"] == sum(r["bytes_in"] for r in rows)
        assert seen["p2pfl_bytes_sent_total"] == sum(r["bytes_out"] for r in rows)
        assert seen["p2pfl_round_seconds_count"] == rounds
        assert seen["p2pfl_peers_connected"] >= 1  # hospital-2
        accepted = seen.get("p2pfl_updates_total|reason=|result=accepted", 0)
        heard = sum(len(r["heard_from"]) for r in rows)  # one accepted update per peer heard
        assert heard <= accepted <= heard + 2  # + the next round's, from the 2 ring neighbours
    assert c.wait(timeout=60) == {"hospital-1": 0, "hospital-2": 0}
