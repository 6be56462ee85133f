"""Blocks on worker threads: every block runs once, torch on one thread inside, its thread count
restored after, nested runs stay on their thread, errors come back to the caller, and the
worker count that has been faster is the one used."""

import threading

import pytest
import torch

from p2pfl.sim import blocks


def test_every_block_runs_once_with_torch_on_one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen, threads, names = [], [], set()
        lock = threading.Lock()

        def fn(start):
            inner = []
            blocks.run(inner.append, [start, start + 1])  # nested: in order, on this thread
            with lock:
                seen.append(start)
                threads.append(torch.get_num_threads())
                names.add(threading.current_thread().name)
            assert inner == [start, start + 1]

        blocks.run(fn, range(0, 40, 2), kind="test-every-block")  # a new kind: all workers first
        assert sorted(seen) == list(range(0, 40, 2)) and set(threads) == {1}
        assert any(name.startswith("p2pfl-block") for name in names)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_block_error_reaches_the_caller():
    def fn(start):
        if start == 3:
            raise ValueError("block 3")

    with pytest.raises(ValueError, match="block 3"):
        blocks.run(fn, range(6))


def test_the_faster_worker_count_is_used_and_the_other_probed_less_often_while_confirmed():
    pace = blocks._Pace()
    assert pace.choose(2) == 2  # each tried once, all workers first
    pace.record(2, 0.5)
    assert pace.choose(2) == 1
    pace.record(1, 0.1)  # one worker was faster (another process holds a core)
    chosen = []
    for _ in range(200):
        count = pace.choose(2)
        chosen.append(count)
        pace.record(count, 0.1 if count == 1 else 0.5)
    probes = [i for i, count in enumerate(chosen) if count == 2]
    gaps = [b - a for a, b in zip(probes, probes[1:], strict=False)]
    assert probes[0] == blocks.PROBE_FIRST - 1 and max(gaps) == blocks.PROBE_MOST
    assert gaps == sorted(gaps)  # the interval grows while the probes confirm one worker
    pace.record(2, 0.01)  # the core came back: the next choice is all workers
    assert pace.choose(2) == 2
