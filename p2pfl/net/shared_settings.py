"""What every member of a consortium must hold identically: the roster and the plan.

Their digests make the consortium ID (p2pfl.protocol.consortium; the roster's version number is
a section too), signed into every update and said in the start hello, so an update of one
consortium or run is refused by every other, naming what differs. The plan is every key of
plan.toml (p2pfl.settings.node: `file_of`), one section per [section]; node.toml's keys (key,
listen address, state folder, threads, timeouts, size limits, where a hospital's table is and
its column names) are left out: they may differ. Of the data source only its shared part is in
(`source`): all of a shared dataset's spec, only the kind (`csv`, `parquet`, `sql`) of a
hospital's own table.
"""

from __future__ import annotations

from p2pfl.learning.sources import shared_part
from p2pfl.protocol.roster import Roster
from p2pfl.settings.node import PLAN_FILE, NodeSettings, keys_of


def plan_sections(settings: NodeSettings) -> dict[str, dict[str, object]]:
    """Section -> {key: value} of every plan key (copies of lists and tables)."""
    out: dict[str, dict[str, object]] = {}
    for section, keys in keys_of(PLAN_FILE).items():
        target = getattr(settings, section)
        out[section] = {key: _copy(getattr(target, key)) for key in keys}
    return out


def shared_sections(settings: NodeSettings, roster: Roster, version: int = 1) -> dict[str, object]:
    """Section name -> the JSON-able content all members must share (`version`: the roster's,
    p2pfl.protocol.roster_chain)."""
    return {
        "roster": [[member.name, member.peer_id] for member in roster.members],
        "roster_version": version,
        "source": shared_part(settings.data.source),
        **plan_sections(settings),
    }


def _copy(value: object) -> object:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
