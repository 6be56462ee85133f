"""What every member of a consortium must hold identically: the roster and the shared settings.

Their digests make the consortium ID (p2pfl.protocol.consortium), signed into every update, so
an update of one consortium or run is refused by every other, naming the sections that differ.
Local settings (key, listen address, state folder, threads, timeouts, size limits, where a
hospital's own table is: its path, or its database URL, sql_query, sql_table and password_env)
are left out: they may differ between members. Of an own table only the source's kind is shared
(`csv`, `parquet`, `sql`); the label column and the classes fix what its rows mean. The start
quorum `gossip.min_peers` is shared (all members start alike), its `start_timeout` is local.
"""

from __future__ import annotations

from p2pfl.learning.sources import shared_part
from p2pfl.protocol.roster import Roster
from p2pfl.settings.node import NodeSettings


def shared_sections(settings: NodeSettings, roster: Roster) -> dict[str, object]:
    """Section name -> the JSON-able content all members must share."""
    d, m, t, g, p = settings.data, settings.model, settings.training, settings.gossip, settings.privacy
    return {
        "roster": [[member.name, member.peer_id] for member in roster.members],
        # a shared source must be the same one; the path of a hospital's own table is its own
        "data": {"source": shared_part(d.source),
                 "label_column": d.label_column, "classes": list(d.classes),
                 "partition": d.partition, "seed": d.seed},
        "model": {"kind": m.kind, "hidden": list(m.hidden)},
        "training": {"run": t.run, "rounds": t.rounds, "local_steps": t.local_steps,
                     "batch_size": t.batch_size, "optimizer": t.optimizer, "lr": t.lr,
                     "momentum": t.momentum, "seed": t.seed},
        "gossip": {"topology": g.topology, "params": dict(g.params), "mixing": g.mixing,
                   "seed": g.seed, "aggregator": g.aggregator, "compression": g.compression,
                   "min_peers": g.min_peers},
        "privacy": {"noise": p.noise, "clip": p.clip, "delta": p.delta},
    }
