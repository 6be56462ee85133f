"""Label flipping: the malicious nodes send honestly, but train on flipped labels y -> C - 1 - y."""

from __future__ import annotations

import numpy as np

from p2pfl.sim.attacks._kind import DataAttack
from p2pfl.sim.data import NodeData


def flip_labels(data: NodeData, bad: np.ndarray) -> NodeData:
    """A copy of `data` where the malicious nodes' training labels are y -> C - 1 - y."""
    y = data.y.clone()
    for k in np.flatnonzero(bad):
        a = int(data.offsets[k])
        y[a : a + int(data.sizes[k])] = data.n_classes - 1 - y[a : a + int(data.sizes[k])]
    return NodeData(data.x, y, data.offsets, data.sizes, data.x_test, data.y_test, data.n_classes)


COMPONENT = DataAttack("label_flip", "the malicious nodes train on flipped labels y -> C - 1 - y, "
                       "then send honestly", flip_labels)
