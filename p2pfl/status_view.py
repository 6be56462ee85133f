"""`p2pfl status`: ask the running node (p2pfl.net.admin) or read its state folder
(p2pfl.net.status), and show the snapshot as a screen (rich) or JSON."""

from __future__ import annotations

import json
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from p2pfl.net import admin
from p2pfl.net.membership import Membership
from p2pfl.net.status import from_state_dir
from p2pfl.settings.node import NodeSettings

FIGURES = (("val_accuracy", "accuracy"), ("val_balanced_accuracy", "balanced accuracy"),
           ("val_auroc", "AUROC"), ("train_loss", "train loss"))


def snapshot_of(settings: NodeSettings) -> dict:
    """The running node's status, or, when none answers, the state folder's."""
    state_dir = settings.path(settings.node.state_dir)
    live = admin.query(state_dir)
    if live is not None:
        return live
    membership = Membership.load(settings, state_dir, store=False)
    era = membership.era_of_state(state_dir)
    names = [m.name for m in era.version.roster.members]
    status = from_state_dir(state_dir, settings.node.name, names, settings.training.rounds)
    status.roster_version = era.version.version
    return status.snapshot(running=False)


def screen(snap: dict) -> Group:
    """The snapshot as `p2pfl status` prints it."""
    where = "running" if snap["running"] else "not running: read from its state folder"
    head = Text.assemble((str(snap["node"]), "bold"), f"  {snap['state']}  ",
                         (f"round {snap['round']}/{snap['rounds']}", "bold"),
                         f"  roster v{snap.get('roster_version', 1)}  ({where}, {snap['time']})")
    figures = snap.get("validation") or {}
    shown = [f"{label} {_figure(figures[key])}" for key, label in FIGURES if figures.get(key) is not None]
    epsilon = snap.get("epsilon")
    lines = [head, Text("validation  " + ("  ".join(shown) or "no round done yet")),
             Text("epsilon     " + (f"{epsilon} spent" if epsilon is not None else "DP-SGD off"))]
    if snap.get("note"):
        lines.append(Text(f"note        {snap['note']}", style="yellow"))
    members = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("member", "round", "state", "last heard", "via"):
        members.add_column(column)
    for m in snap["members"]:
        heard = "never" if m["last_heard"] is None else f"{m['seconds_ago']} s ago ({m['last_heard']})"
        members.add_row(m["name"], _dash(m["round"]), _dash(m["state"]), heard, _dash(m["via"]))
    refused = snap["refused_last_hour"]
    tail: list = [Text("updates not accepted in the last hour: " + ("none" if not refused else ""))]
    if refused:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("count", "result", "reason"):
            table.add_column(column)
        for r in refused:
            table.add_row(str(r["count"]), r["result"], r["reason"])
        tail.append(table)
    return Group(*lines, Text(""), members, Text(""), *tail)


def show(settings: NodeSettings, as_json: bool, watch: float | None) -> int:
    """Print the status once, or every `watch` seconds until interrupted (the screen redrawn in
    place; with JSON, one line per refresh)."""
    if watch is None:
        snap = snapshot_of(settings)
        print(json.dumps(snap, indent=1)) if as_json else Console().print(screen(snap))
        return 0
    if as_json:
        while True:
            print(json.dumps(snapshot_of(settings)), flush=True)
            time.sleep(watch)
    with Live(screen(snapshot_of(settings)), auto_refresh=False) as live:
        while True:
            time.sleep(watch)
            live.update(screen(snapshot_of(settings)), refresh=True)


def _figure(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
