"""The label-flipping attack: poisoned data, honest messages."""

import numpy as np
import pytest
import torch

from p2pfl.sim.attacks import attacked_messages, flip_labels, poisoned_data
from p2pfl.sim.data import NodeData
from p2pfl.sim.options import Attack

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data() -> NodeData:
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3])
    return NodeData(torch.zeros(9, 2), y, torch.tensor([0, 4, 6]), np.array([4, 2, 3]),
                    torch.zeros(2, 2), torch.tensor([0, 1]), 4)


def test_only_the_malicious_nodes_labels_are_flipped():
    data, bad = _data(), np.array([False, True, True])
    flipped = flip_labels(data, bad)
    assert flipped.y.tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0]
    assert data.y.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 3]  # a copy
    assert torch.equal(poisoned_data(Attack("label_flip", 0.5), data, bad).y, flipped.y)
    assert torch.equal(flipped.y_test, data.y_test)


def test_messages_are_sent_honestly():
    x = torch.randn(3, 4)
    bad = np.array([True, False, False])
    assert attacked_messages(Attack("label_flip", 0.5), x, bad, torch.Generator()) is x
