"""Aggregation rules, one module per rule; `p2pfl.gossip.robust.AGGREGATORS` is their registry.

Each module defines `COMPONENT`, an instance of a `_rule.Rule` subclass: its name, summary,
parameters and paper, how it reads and checks its `name:key=value` parameters, and its batched
combine of [n, D, P] neighbourhoods. The engine that gathers neighbourhoods, checks counts and
re-normalises weights is `p2pfl.gossip.robust`.
"""
