"""The Ray backend (`--backend ray`): an experiment's runs as Ray tasks on a Ray cluster.

The cluster is `--address ADDR` (the head's HOST:PORT, or ray://HOST:10001 for Ray Client), else
RAY_ADDRESS, else a local Ray started for the command with --jobs CPUs (no dashboard, the
workers' output not copied here) and shut down at the end. Every node of a cluster needs p2pfl
(the same version) and the experiment's data files at the same paths. Ray moves tasks between
the driver and its workers with pickle: use a cluster you run (Ray 2.60 asks for its token).

A task is one run: the job JSON in, the result JSON out (runner.execute), so the numbers are
those of `--jobs`. A task whose worker dies is not retried (a run fails the same way again): its
error stops the sweep as a failing local run does, and running the command again resumes.
Ray is imported only here, and only when the backend is opened.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from p2pfl.errors import UserError

INSTALL = "--backend ray needs Ray: install p2pfl[cluster] (pip install ray==2.60.0)"
CONNECT_TIMEOUT_S = 10.0  # to open a TCP connection to the cluster's address, before Ray tries
POLL_S = 1.0  # ray.wait returns at least this often (Ctrl-C is seen between waits)
GET_TIMEOUT_S = 60.0  # fetching a finished task's result (a JSON string)


@contextmanager
def open_session(jobs: int, address: str | None) -> Iterator[RaySession]:
    """Connect to the cluster (or start a local Ray with `jobs` CPUs); disconnect at the end."""
    ray = _import_ray()
    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if target is None:
            ray.init(address="local", num_cpus=jobs, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            _probe(target)
            ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever Ray raises for a cluster it cannot use
        where = f"the Ray cluster at {target}" if target else "a local Ray"
        raise UserError(f"cannot start or connect to {where}: {_first_line(exc)}") from None
    try:
        yield RaySession(ray)
    finally:
        ray.shutdown()


class RaySession:
    """A connected Ray driver: runs jobs as tasks, one CPU each (and one GPU for a cuda run)."""

    no_gpu = "the Ray cluster has no GPU"

    def __init__(self, ray: Any):
        self.ray = ray

    def has_cuda(self) -> bool:
        """True when the cluster has a GPU."""
        return float(self.ray.cluster_resources().get("GPU", 0)) > 0

    def run(self, jobs: list[str], work: Callable[..., str],
            on_round: Callable[[int], None] | None = None) -> Iterator[tuple[int, str]]:
        """Submit every job; yield (index, result JSON) as tasks finish. Tasks still pending
        when the caller stops (an error, Ctrl-C) are cancelled."""
        ray = self.ray
        task = ray.remote(num_cpus=1, max_retries=0)(_task)
        refs = {}
        for i, job in enumerate(jobs):
            gpus = 1 if json.loads(job).get("device") == "cuda" else 0
            refs[task.options(num_gpus=gpus).remote(work, job)] = i
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    yield refs[ref], self._result(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _result(self, ref: Any) -> str:
        try:
            return str(self.ray.get(ref, timeout=GET_TIMEOUT_S))
        except self.ray.exceptions.RayError as exc:  # the worker died, or the task could not run
            return json.dumps({"error": f"the Ray task failed: {exc}", "user": False})


def _task(work: Callable[[str], str], job: str) -> str:
    """One run in a Ray worker, on one torch thread like a local worker process."""
    import torch

    torch.set_num_threads(1)
    return work(job)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    return ray


def _probe(address: str) -> None:
    """A TCP connection to HOST:PORT within CONNECT_TIMEOUT_S (Ray itself retries for minutes);
    an address of another form ("auto", ...) is left to Ray."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
