"""A graph from a file: an edge list (`a b` per line, # comments) or GraphML."""

from pathlib import Path

import networkx as nx

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topologies import StaticTopology


def read(path: Path, n: int) -> nx.Graph:
    """The graph of the file, nodes relabelled 0..n-1 in (length, text) order of their labels."""
    if not path.is_file():
        raise GossipSettingError(f"topology file {path} does not exist")
    try:
        if path.suffix.lower() == ".graphml":
            g = nx.Graph(nx.read_graphml(path))
        else:
            g = nx.read_edgelist(path, nodetype=str, data=False, comments="#")
    except Exception as exc:  # noqa: BLE001 - networkx raises many types on bad files
        raise GossipSettingError(f"topology file {path}: cannot read it as an edge list or GraphML "
                                 f"({exc})") from None
    if g.number_of_nodes() != n:
        raise GossipSettingError(f"topology file {path} has {g.number_of_nodes()} nodes, --nodes is {n}")
    labels = sorted(g.nodes(), key=lambda v: (len(str(v)), str(v)))
    return nx.relabel_nodes(g, {v: i for i, v in enumerate(labels)})


COMPONENT = StaticTopology("file", "the graph of an edge-list or GraphML file",
                           lambda n, p, seed: read(Path(str(p["path"])), n), argument="PATH")
