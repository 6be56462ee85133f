"""Test harness: a consortium of real `p2pfl node` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import torch
from forked import ForkedNode

from p2pfl.demo import DemoOptions, setup
from p2pfl.files.keys import load_key
from p2pfl.files.roster_file import load_roster
from p2pfl.net.checkpoint import CHECKPOINT, read_metrics
from p2pfl.settings.node import PLAN_FILE, keys_of
from p2pfl.settings.toml_out import dumps_document
from p2pfl.tomlio import read_toml

WAIT = 120.0  # seconds any single wait in these tests may take


class Consortium:
    """Keys, roster and configs in `folder`; processes started on demand."""

    def __init__(self, folder: Path, nodes: int = 4, rounds: int = 5, round_timeout: float = 10.0,
                 topology: str = "ring", dataset: str = "breast_cancer", partition: str = "dirichlet:0.5"):
        self.folder = folder
        self.opt = DemoOptions(nodes=nodes, rounds=rounds, dataset=dataset, topology=topology,
                               partition=partition, folder=folder, round_timeout=round_timeout)
        self.names = [f"hospital-{i + 1}" for i in range(nodes)]
        self.configs = dict(zip(self.names, setup(folder, self.names, self.opt), strict=True))
        self.roster = load_roster(folder / "roster.toml")
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, *names: str, program: list[str] | None = None) -> None:
        """Start `p2pfl node` (forked from this process: tests/net/forked.py), or `program` +
        --config as a new process, for the named nodes (default: all)."""
        for name in names or self.names:
            path = self.folder / name / "node.log"
            if program is None:
                self.procs[name] = ForkedNode(self.configs[name], path)
                continue
            with path.open("a") as log:
                self.procs[name] = subprocess.Popen(
                    [*program, "--config", str(self.configs[name])],
                    stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def configure(self, section: str, lines: str, *names: str) -> None:
        """Set `key = value` lines (TOML) in `[section]` of the named nodes' configs (default:
        every node's), in node.toml or the node's plan.toml, where the key lives, replacing a key
        that is already there. Values are not checked: a test
        may write a bad one on purpose."""
        values = tomllib.loads(lines)
        plan_keys = keys_of(PLAN_FILE).get(section, [])
        for config in (self.configs[n] for n in names or self.names):
            for path, keys in ((config, [k for k in values if k not in plan_keys]),
                               (config.parent / PLAN_FILE, [k for k in values if k in plan_keys])):
                if keys:  # each key goes to its file: node.toml or the node's copy of plan.toml
                    raw = read_toml(path)
                    raw.setdefault(section, {}).update({k: values[k] for k in keys})  # type: ignore[union-attr]
                    path.write_text(dumps_document(raw))

    def wait(self, *names: str, timeout: float = WAIT) -> dict[str, int]:
        """Exit codes of the named (default: all started) processes."""
        end = time.monotonic() + timeout
        codes = {}
        for name in names or list(self.procs):
            codes[name] = self.procs[name].wait(timeout=max(0.1, end - time.monotonic()))
        return codes

    def wait_for(self, predicate, timeout: float = WAIT, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def kill_after(self, name: str, rounds: int) -> int:
        """Start all nodes, kill -9 `name` once it has finished `rounds` rounds; returns the
        rounds it had finished (its checkpoint round)."""
        self.start()
        self.wait_for(lambda: len(self.metrics(name)) >= rounds, what=f"{name} to finish {rounds} rounds")
        self.signal(name, signal.SIGKILL)
        self.wait(name)
        return len(self.metrics(name))

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.folder / name / "node.log").read_text()

    def metrics(self, name: str) -> list[dict]:
        return read_metrics(self.folder / name / "state")

    def params(self, name: str) -> torch.Tensor:
        state = torch.load(self.folder / name / "state" / CHECKPOINT, weights_only=True)
        return torch.cat([v.reshape(-1) for v in state["model"].values()])

    def key(self, name: str):
        return load_key(self.folder / name / "node.key")

    def binding(self, name: str):
        """The consortium ID the named node signs into its updates (p2pfl.protocol.consortium)."""
        from p2pfl.net.shared_settings import shared_sections
        from p2pfl.protocol.consortium import consortium_of
        from p2pfl.settings.load import node_settings

        return consortium_of(shared_sections(node_settings(self.configs[name]), self.roster))

    def address(self, name: str) -> str:
        member = self.roster.by_name(name)
        return f"{member.addresses[0]}/p2p/{member.peer_id}"
