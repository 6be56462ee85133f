"""Blocks of nodes on worker threads, every torch op on one thread: one thread's numbers, and
no barrier between ops for a core that other processes also use to stall.

torch's own threads meet at the end of every operation; when another process holds one of the
cores, each meeting waits for a time slice, and a 10,000-node round on 2 threads took ten times
as long as on 1. Nodes do not interact while they train, mix or are evaluated, so their blocks
go to Python threads instead (torch releases the GIL inside its operations) with torch itself
on one thread: each block computes what a single-threaded run computes, whatever the number of
workers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

_local = threading.local()  # .inside: this thread is running blocks
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, workers) -> pool


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread within (and `run` in order); the thread count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(fn: Callable[[int], None], starts: Iterable[int]) -> None:
    """fn(start) for every block start, with torch on one thread, spread over as many Python
    threads as torch had threads (here, in order, when that is one or when already in a run).
    fn must touch only its own block's rows."""
    starts = list(starts)
    if getattr(_local, "inside", False):
        for start in starts:
            fn(start)
        return
    threads = torch.get_num_threads()
    workers = min(len(starts), threads)
    torch.set_num_threads(1)
    _local.inside = True
    try:
        if workers <= 1:
            for start in starts:
                fn(start)
        else:
            pool = _pool(workers)
            for future in [pool.submit(_on_worker, fn, start) for start in starts]:
                future.result()
    finally:
        _local.inside = False
        torch.set_num_threads(threads)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The pool of this many workers, made anew in a forked child (whose copy has no threads)."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="p2pfl-block")
    return _pools[key]


def _on_worker(fn: Callable[[int], None], start: int) -> None:
    _local.inside = True  # a run inside fn stays on this thread
    fn(start)
