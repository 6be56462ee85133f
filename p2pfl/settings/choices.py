"""Help strings that list the members of an extension point: the one place each is built.

The settings schema (node.toml comments) and the `p2pfl simulate` flags both read them.
"""

from __future__ import annotations


def aggregator_help() -> str:
    from p2pfl.gossip.robust import AGGREGATORS

    return (f"how a node combines its neighbours' models: {AGGREGATORS.choices()} "
            "(e.g. trimmed_mean:b=1, clipped:delta=0.1)")


def compression_help() -> str:
    from p2pfl.gossip.compression import COMPRESSIONS

    return (f"how models are compressed on the wire: {COMPRESSIONS.choices()} "
            "(e.g. topk:fraction=0.01, int8:chunk=256)")


def topology_help() -> str:
    from p2pfl.gossip.topologies import usages

    return f"communication graph: {usages()}"


def source_help() -> str:
    from p2pfl.learning.sources import usages

    return f"data source: {usages()}"


def model_help() -> str:
    from p2pfl.learning.models import MODELS

    return f"model: {MODELS.choices()} or python:MODULE:FUNCTION (your own)"


def attack_help() -> str:
    from p2pfl.sim.attacks import ATTACKS

    return f"Byzantine members, NAME:FRACTION with NAME one of {ATTACKS.choices()} (e.g. sign_flip:0.2)"


def partition_help() -> str:
    from p2pfl.learning.partitions import usages

    return f"how bundled data is split among the members: {usages()}"
