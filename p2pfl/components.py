"""Every extension point and its members, read from the registries (`p2pfl components`).

Each extension point is a package with one module per member (p2pfl/registry.py); this module
only names where each registry lives, so the table, the CLI help and config validation can
never disagree with what is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass

from p2pfl.registry import Registry

# extension point -> (module, registry attribute); the order of the table
EXTENSION_POINTS: dict[str, tuple[str, str]] = {
    "aggregator": ("p2pfl.gossip.robust", "AGGREGATORS"),
    "compression": ("p2pfl.gossip.compression", "COMPRESSIONS"),
    "topology": ("p2pfl.gossip.topologies", "TOPOLOGIES"),
    "model": ("p2pfl.learning.models", "MODELS"),
    "data source": ("p2pfl.learning.sources", "SOURCES"),
    "partition": ("p2pfl.learning.partitions", "PARTITIONS"),
    "attack": ("p2pfl.sim.attacks", "ATTACKS"),
}


@dataclass(frozen=True)
class Row:
    """One member: how to name it in a setting, what it does, its parameters and paper."""

    kind: str
    name: str  # as a setting names it, with its argument: "ring", "file:PATH", "csv:PATH"
    params: str  # "b=1, ..." with defaults ("auto": computed); given as name:key=value,...
    summary: str
    paper: str
    module: str


def registry(kind: str) -> Registry:
    """The registry of one extension point."""
    module, attribute = EXTENSION_POINTS[kind]
    return getattr(importlib.import_module(module), attribute)


def rows(kinds: list[str] | None = None) -> Iterator[Row]:
    """The members of the given extension points (all when None), in table order."""
    for kind in kinds or list(EXTENSION_POINTS):
        reg = registry(kind)
        for member in reg:
            argument = getattr(member, "argument", "")
            params = ", ".join(f"{p.key}={_shown(p.default)}" for p in getattr(member, "params", ()))
            yield Row(kind, member.name + (f":{argument}" if argument else ""), params, member.summary,
                      getattr(member, "paper", "") or "", f"{reg.package}.{member.name}")


def markdown(kinds: list[str] | None = None) -> str:
    """The table as Markdown."""
    lines = ["| extension point | name | parameters (default) | what it does | paper |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.kind} | `{r.name}` | {r.params} | {r.summary} | {r.paper} |" for r in rows(kinds)]
    return "\n".join(lines)


def text(kinds: list[str] | None = None) -> str:
    """The table for a terminal: one block per extension point."""
    out: list[str] = []
    for kind in kinds or list(EXTENSION_POINTS):
        out.append(f"{kind}s:")
        for r in rows([kind]):
            params = f" [{r.params}]" if r.params else ""
            out.append(f"  {r.name}{params}")
            out.append(f"      {r.summary}" + (f" ({r.paper})" if r.paper else ""))
    return "\n".join(out)


def _shown(value: object) -> str:
    if value is None:
        return "auto"
    if isinstance(value, (tuple, list)):
        return "-".join(str(v) for v in value)
    return str(value)
