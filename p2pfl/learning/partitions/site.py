"""By site: the rows of each site (hospital) stay together; node k holds sites k, k + nodes, ..."""

from __future__ import annotations

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.partition import Partition
from p2pfl.learning.partitions import PartitionKind, Rows


def _split(rows: Rows, value: float | None) -> Partition:
    site, nodes = rows.site, rows.nodes
    if site is None:
        raise LearningSettingError(
            "partition 'site' needs a dataset with a site column (synthetic, or csv with --site-column)"
        )
    sites = np.unique(site)
    if len(sites) < nodes:
        raise LearningSettingError(f"partition 'site': the data has {len(sites)} sites, fewer than "
                                   f"the {nodes} nodes")
    # Sites are dealt to nodes in order: node k holds sites k, k + nodes, ...
    node_of_row = np.searchsorted(sites, site) % nodes
    order = np.argsort(node_of_row, kind="stable")
    return Partition(np.split(order, np.cumsum(np.bincount(node_of_row, minlength=nodes))[:-1]))


COMPONENT = PartitionKind("site", "each site's rows on one node (needs a site column)", _split)
