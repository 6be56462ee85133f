"""Blocks on worker threads: every block runs once, torch on one thread inside, its thread count
restored after, nested runs stay on their thread, and errors come back to the caller."""

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

        blocks.run(fn, range(0, 40, 2))
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
