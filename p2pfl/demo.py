"""`p2pfl demo`: a consortium of real node processes on 127.0.0.1, on bundled data.

It generates a key, a roster entry, a node.toml and a copy of the consortium's plan.toml per
hospital, starts one `p2pfl node`
process each, shows live progress from their metrics.jsonl files, and ends with each hospital's
accuracy next to local-only and centralized training of the same model on the same split.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2pfl import demo_tables
from p2pfl.atomic import write_atomic
from p2pfl.commands import keygen
from p2pfl.errors import UserError
from p2pfl.files.roster_file import write_roster
from p2pfl.learning.draft import Draft
from p2pfl.learning.sources import resolve_spec, source_of
from p2pfl.net.checkpoint import read_metrics
from p2pfl.protocol.roster import Member, Roster
from p2pfl.settings.node import (
    NODE_FILE,
    PLAN_FILE,
    DataSection,
    GossipSection,
    ModelSection,
    NodeSection,
    NodeSettings,
    PrivacySection,
    TaskSection,
    TrainingSection,
)
from p2pfl.settings.plan import apply_draft
from p2pfl.settings.sim import SimConfig
from p2pfl.settings.toml_out import to_toml
from p2pfl.sim.runner import baseline

LOCAL_STEPS, BATCH, LR, HIDDEN = 5, 16, 0.05, 32
ROUND_TIMEOUT = 10.0


@dataclass
class DemoOptions:
    nodes: int = 4
    rounds: int = 10
    dataset: str = "breast_cancer"
    topology: str = "ring"
    partition: str = "dirichlet:0.5"
    folder: Path | None = None
    json: bool = False
    round_timeout: float = ROUND_TIMEOUT
    aggregator: str = "mean"
    compression: str = "none"
    dp: str = ""  # "noise=SIGMA,clip=C[,delta=D]": DP-SGD at every node
    label_column: str = "label"  # of a table (--dataset csv:PATH)


def run_demo(opt: DemoOptions) -> int:
    """Set up, run and report the demo; returns the exit code."""
    if opt.nodes < 2:
        raise UserError("--nodes must be at least 2")
    if opt.rounds < 1:
        raise UserError("--rounds must be at least 1")
    folder = opt.folder or Path(tempfile.mkdtemp(prefix="p2pfl-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; give an empty or new --dir")
    names = [f"hospital-{i + 1}" for i in range(opt.nodes)]
    configs = setup(folder, names, opt)
    say = (lambda *a: None) if opt.json else (lambda *a: print(*a, file=sys.stderr))
    say(f"consortium of {opt.nodes} hospitals in {folder} ({opt.dataset}, {opt.partition}, {opt.topology})")
    procs = [
        subprocess.Popen([sys.executable, "-m", "p2pfl", "node", "--config", str(c)],
                         stdout=subprocess.DEVNULL, stderr=(c.parent / "node.log").open("w"))
        for c in configs
    ]
    try:
        watch(folder, names, procs, opt, quiet=opt.json)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)
    failed = [n for n, p in zip(names, procs, strict=True) if p.returncode != 0]
    if failed:
        raise UserError(f"node(s) {', '.join(failed)} failed; see {folder}/<name>/node.log")
    report = summarize(folder, names, opt)
    plot(folder, names, report, opt)
    if opt.json:
        print(json.dumps(report))
    else:
        print_table(report)
        say(f"convergence plot: {folder / 'convergence.png'}; logs: {folder}/<hospital>/node.log")
    return 0


def setup(folder: Path, names: list[str], opt: DemoOptions) -> list[Path]:
    """Keys, roster, node.toml and plan.toml (each hospital holds its copy of the plan) for every
    hospital, listening on free loopback ports; the node.toml paths."""
    members = []
    for name in names:
        (folder / name).mkdir()
        pid = keygen(folder / name / "node.key", None)
        members.append(Member(name, pid, (f"/ip4/127.0.0.1/tcp/{_free_port()}",)))
    write_roster(folder / "roster.toml", Roster(members))
    configs = []
    privacy = privacy_section(opt.dp)
    table = None
    if not source_of(opt.dataset)[0].shared:  # a table: each hospital gets its own rows
        rows = demo_tables.read_rows(opt.dataset)
        demo_tables.deal_out(rows, [folder / n for n in names])
        table = demo_tables.draft(rows, opt.label_column)
    for m in members:
        settings = node_config(m, opt, len(names), privacy, folder)
        if table is not None:
            _own_table(settings, table, opt.label_column)
        if m is members[0]:  # the simulator's baselines read the same plan
            write_atomic(folder / PLAN_FILE, to_toml(settings, file=PLAN_FILE))
        path = folder / m.name / "node.toml"
        write_atomic(path, to_toml(settings, file=NODE_FILE))
        write_atomic(settings.path(settings.node.plan), to_toml(settings, file=PLAN_FILE))
        configs.append(path)
    return configs


def node_config(member: Member, opt: DemoOptions, nodes: int, privacy: PrivacySection,
                folder: Path) -> NodeSettings:
    """One hospital's settings: the demo's training on bundled data, on a loopback port."""
    return NodeSettings(
        node=NodeSection(name=member.name, listen=member.addresses[0], roster="../roster.toml"),
        data=DataSection(source=opt.dataset),
        task=TaskSection(partition=opt.partition),
        model=ModelSection(kind="mlp", hidden=[HIDDEN]),
        training=TrainingSection(threads=max(1, (os.cpu_count() or 1) // nodes), rounds=opt.rounds,
                                 local_steps=LOCAL_STEPS, batch_size=BATCH, lr=LR),
        gossip=GossipSection(topology=opt.topology, round_timeout=opt.round_timeout,
                             report_timeout=2 * opt.round_timeout,
                             aggregator=opt.aggregator, compression=opt.compression),
        privacy=privacy,
        base_dir=folder / member.name,
    )


def _own_table(settings: NodeSettings, table: Draft, label_column: str) -> None:
    """A hospital's own rows (demo_tables.TABLE) with the drafted task and features."""
    settings.data.source = f"csv:{demo_tables.TABLE}"
    apply_draft(settings, table, label_column)


def privacy_section(dp: str) -> PrivacySection:
    """`noise=1.0,clip=1.0,delta=1e-5` -> the [privacy] section of the plan."""
    from p2pfl.gossip.spec import key_values, number

    values = key_values(dp, dp)
    unknown = set(values) - {"noise", "clip", "delta"}
    if unknown:
        raise UserError(f"--dp takes noise=, clip= and delta=, not {', '.join(sorted(unknown))}")
    if values and "noise" not in values:
        raise UserError("--dp needs noise=SIGMA")
    return PrivacySection(**{k: number(f"--dp {k}", v) for k, v in values.items()})


def watch(folder: Path, names: list[str], procs: list, opt: DemoOptions, quiet: bool) -> None:
    """Live table of each hospital's round and accuracy until every process exits."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    deadline = time.monotonic() + 60 + opt.rounds * (opt.round_timeout * 2 + 10)

    def table() -> Table:
        t = Table(title="p2pfl demo: live")
        for col in ("hospital", "round", "val accuracy", "heard from", "state"):
            t.add_column(col)
        for name, p in zip(names, procs, strict=True):
            rows = read_metrics(folder / name / "state")
            last = rows[-1] if rows else {}
            code = p.poll()
            state = "running" if code is None else ("done" if code == 0 else f"exit {code}")
            t.add_row(name, f"{len(rows)}/{opt.rounds}",
                      f"{last['val_accuracy']:.3f}" if last else "-",
                      ", ".join(last.get("heard_from", [])) or "-", state)
        return t

    console = Console(stderr=True)
    with Live(table(), console=console, refresh_per_second=4, transient=False,
              auto_refresh=False) as live:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise UserError("the demo did not finish in time; see the node.log files")
            if not quiet:
                live.update(table(), refresh=True)
            time.sleep(0.5)
        if not quiet:
            live.update(table(), refresh=True)
    if not quiet:
        console.print()


def summarize(folder: Path, names: list[str], opt: DemoOptions) -> dict[str, object]:
    """Per-hospital final accuracy, with local-only and centralized baselines."""
    hospitals = []
    local = local_only(folder, names, opt)
    for i, name in enumerate(names):
        rows = read_metrics(folder / name / "state")
        hospitals.append({
            "name": name,
            "rounds": len(rows),
            "accuracy": rows[-1]["val_accuracy"] if rows else None,
            "local_only_accuracy": local[i],
            "epsilon": rows[-1].get("epsilon") if rows else None,
            "curve": [r["val_accuracy"] for r in rows],
        })
    accs = [h["accuracy"] for h in hospitals if h["accuracy"] is not None]
    return {
        "dir": str(folder),
        "dataset": opt.dataset, "topology": opt.topology,
        "partition": opt.partition if source_of(opt.dataset)[0].shared else "own rows of the table",
        "nodes": opt.nodes, "rounds": opt.rounds,
        "hospitals": hospitals,
        "mean_accuracy": float(np.mean(accs)) if accs else None,
        "mean_local_only_accuracy": float(np.mean(local)),
        "centralized_accuracy": centralized(folder, names, opt),
    }


def baseline_config(folder: Path, names: list[str], opt: DemoOptions) -> SimConfig:
    """The simulator settings of the demo's training (same data split, model and batch plan)."""
    table = not source_of(opt.dataset)[0].shared
    return SimConfig(dataset=resolve_spec(opt.dataset, Path.cwd()), nodes=len(names),
                     partition="iid" if table else opt.partition, model="mlp",
                     hidden=str(HIDDEN), rounds=opt.rounds, local_steps=LOCAL_STEPS, batch_size=BATCH,
                     optimizer="sgd", lr=LR, seed=0, engine="reference", topology="complete",
                     eval_every=opt.rounds, label_column=opt.label_column,
                     plan=str(folder / PLAN_FILE) if table else None)


def local_only(folder: Path, names: list[str], opt: DemoOptions) -> list[float]:
    """Each hospital alone: the same model and steps on its own shard, no communication."""
    return baseline(baseline_config(folder, names, opt), "local").node_accuracy


def centralized(folder: Path, names: list[str], opt: DemoOptions) -> float:
    """One model on the pooled training data of all hospitals (what sharing the data would give)."""
    return baseline(baseline_config(folder, names, opt), "centralized").node_accuracy[0]


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{report['nodes']} hospitals, {report['dataset']} ({report['partition']}), "
              f"{report['topology']}, {report['rounds']} rounds: validation accuracy")
    dp = any(h["epsilon"] for h in report["hospitals"])
    cols = ["hospital", "p2pfl (decentralized)", "local only", "centralized (pooled data)"]
    for col in cols + (["epsilon (DP)"] if dp else []):
        t.add_column(col, justify="left" if col == "hospital" else "right")
    for h in report["hospitals"]:
        eps = [f"{h['epsilon']:.2f}"] if dp else []
        t.add_row(h["name"], f"{h['accuracy']:.3f}", f"{h['local_only_accuracy']:.3f}",
                  f"{report['centralized_accuracy']:.3f}", *eps)
    t.add_row("mean", f"{report['mean_accuracy']:.3f}", f"{report['mean_local_only_accuracy']:.3f}",
              f"{report['centralized_accuracy']:.3f}", *([""] if dp else []), style="bold")
    Console().print(t)


def plot(folder: Path, names: list[str], report: dict, opt: DemoOptions) -> None:
    """Validation accuracy per round of every hospital, with the two baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for h in report["hospitals"]:
        ax.plot(range(1, len(h["curve"]) + 1), h["curve"], marker="o", ms=3, label=h["name"])
    ax.axhline(report["centralized_accuracy"], color="k", ls="--", label="centralized (pooled)")
    ax.axhline(report["mean_local_only_accuracy"], color="grey", ls=":", label="local only (mean)")
    ax.set(xlabel="round", ylabel="validation accuracy",
           title=f"p2pfl demo: {opt.nodes} hospitals, {opt.dataset}, {opt.topology}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "convergence.png", dpi=110)
    plt.close(fig)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
