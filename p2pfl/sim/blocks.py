"""Blocks of nodes on worker threads, every torch op on one thread: one thread's numbers, and
no barrier between ops for a core that other processes also use to stall.

torch's own threads meet at the end of every operation; when another process holds one of the
cores, each meeting waits for a time slice, and a 10,000-node round on 2 threads took ten times
as long as on 1. Nodes do not interact while they train, mix or are evaluated, so their blocks
go to Python threads instead (torch releases the GIL inside its operations) with torch itself
on one thread: each block computes what a single-threaded run computes, whatever the number of
workers.

That makes the number of workers free to change between runs without changing a result, and it
does: on a shared machine a second worker doubles the speed while a core is idle and costs half
again (caches shared, the GIL handed back and forth) while another process holds it. Each kind
of block keeps the seconds per block it saw with one worker and with all of them, runs the
faster, and tries the other now and then: after PROBE_FIRST runs, then at twice the interval
while the tries confirm the choice (up to PROBE_MOST).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

PROBE_FIRST, PROBE_MOST = 4, 32  # runs between tries of the worker count not in use

_local = threading.local()  # .inside: this thread is running blocks
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, workers) -> pool
_lock = threading.Lock()


@dataclass
class _Pace:
    """Seconds per block of one kind of block, by worker count; when to try the other next."""

    seconds: dict[int, float] = field(default_factory=dict)
    best: int = 0  # the worker count in use
    interval: int = PROBE_FIRST  # runs between probes: doubles while probes confirm `best`
    until_probe: int = PROBE_FIRST

    def choose(self, most: int) -> int:
        """The worker count for the next run: each tried once, then the faster, probing."""
        for count in (most, 1):
            if count not in self.seconds:
                return count
        best = min(self.seconds, key=self.seconds.__getitem__)
        if best != self.best:  # a probe (or the first pair) changed the choice: probe soon
            self.best, self.interval, self.until_probe = best, PROBE_FIRST, PROBE_FIRST
        self.until_probe -= 1
        if self.until_probe > 0:
            return best
        self.interval = min(PROBE_MOST, 2 * self.interval)
        self.until_probe = self.interval
        return 1 if best == most else most

    def record(self, count: int, per_block: float) -> None:
        """The latest figure stands: a core taken or freed by another process shows at once
        (and the first run's one-time costs are forgotten at the next)."""
        self.seconds[count] = per_block


_paces: dict[str, _Pace] = {}


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread within (and `run` in order); the thread count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(fn: Callable[[int], None], starts: Iterable[int], kind: str = "") -> None:
    """fn(start) for every block start, with torch on one thread, on one worker (here, in
    order) or as many Python threads as torch had threads, whichever has been faster for this
    `kind` of block (always here when torch has one thread, or inside a run). fn must touch
    only its own block's rows."""
    starts = list(starts)
    if getattr(_local, "inside", False):
        for start in starts:
            fn(start)
        return
    threads = torch.get_num_threads()
    most = min(len(starts), threads)
    with _lock:
        pace = _paces.setdefault(kind, _Pace())
        workers = pace.choose(most) if most > 1 else 1
    torch.set_num_threads(1)
    _local.inside = True
    began = time.perf_counter()
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
    if most > 1:
        with _lock:
            pace.record(workers, (time.perf_counter() - began) / len(starts))


def _pool(workers: int) -> ThreadPoolExecutor:
    """The pool of this many workers, made anew in a forked child (whose copy has no threads)."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="p2pfl-block")
    return _pools[key]


def _on_worker(fn: Callable[[int], None], start: int) -> None:
    _local.inside = True  # a run inside fn stays on this thread
    fn(start)
