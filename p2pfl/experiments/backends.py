"""Where an experiment's runs execute: the backends (`--backend local|ray`), in one registry.

A backend is opened for the runs a sweep still has to do and gives a session that runs the
jobs (JSON strings, see runner.execute) and yields (index, result JSON) as each one finishes;
the runner saves every result as it arrives, so a sweep stopped at any point resumes by running
the command again, whichever backend ran the first part. The session also says whether its
workers have a CUDA GPU (for `--device`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from p2pfl.errors import UserError
from p2pfl.experiments import ray_backend

OnRound = Callable[[int], None]
Work = Callable[..., str]  # runner.execute: (job JSON, on_round=None) -> result JSON


class Session(Protocol):
    """An opened backend; `no_gpu` says where a GPU is missing, for --device cuda's error."""

    no_gpu: str

    def has_cuda(self) -> bool:
        """True when the runs' workers have a CUDA GPU."""
        ...

    def run(self, jobs: list[str], work: Work, on_round: OnRound | None) -> Iterator[tuple[int, str]]:
        """Run `work` on every job; yield (index in `jobs`, result) as runs finish."""
        ...


@dataclass(frozen=True)
class Backend:
    """One backend: its --backend name, a line of help, how to open it (jobs, address), and
    whether it takes an --address (a cluster's)."""

    name: str
    summary: str
    open: Callable[[int, str | None], AbstractContextManager[Session]]
    takes_address: bool = False


class LocalSession:
    """This machine: the runs one after another in this process (jobs 1, with per-round
    progress), or in `jobs` spawned worker processes; only JSON strings cross processes."""

    no_gpu = "no CUDA GPU here (torch.cuda.is_available() is false)"

    def __init__(self, jobs: int):
        self.jobs = jobs

    def has_cuda(self) -> bool:
        from p2pfl.sim.device import cuda_available

        return cuda_available()

    def run(self, jobs: list[str], work: Work, on_round: OnRound | None) -> Iterator[tuple[int, str]]:
        if self.jobs == 1 or len(jobs) <= 1:
            with _single_thread():
                for i, job in enumerate(jobs):
                    yield i, work(job, on_round)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker)
        try:
            futures = {pool.submit(work, job): i for i, job in enumerate(jobs)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _open_local(jobs: int, address: str | None) -> Iterator[LocalSession]:
    yield LocalSession(jobs)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("local", "worker processes on this machine (--jobs of them)", _open_local),
    Backend("ray", "Ray tasks on a Ray cluster (--address, RAY_ADDRESS, or a local Ray)",
            ray_backend.open_session, takes_address=True),
)}
BACKEND_NAMES = tuple(BACKENDS)


def get_backend(name: str, address: str | None = None) -> Backend:
    """The backend called `name`, checked against `address`; a UserError when there is none or
    it takes no address."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if address is not None and not BACKENDS[name].takes_address:
        takers = ", ".join(b.name for b in BACKENDS.values() if b.takes_address)
        raise UserError(f"--address names a cluster: it goes with --backend {takers}, not {name}")
    return BACKENDS[name]


class _single_thread:
    """torch.set_num_threads(1) for the runs of this process (restored afterwards), like the workers."""

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.before)


def _init_worker() -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
