"""IID: a random permutation of the rows cut into near-equal parts."""

from p2pfl.learning.partition import Partition
from p2pfl.learning.partitions import PartitionKind, Rows, even


def _split(rows: Rows, value: float | None) -> Partition:
    return Partition(even(rows.rng.permutation(len(rows.y)), rows.nodes))


COMPONENT = PartitionKind("iid", "rows shuffled and dealt in near-equal parts", _split)
