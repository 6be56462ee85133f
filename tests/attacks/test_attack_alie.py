"""ALIE, "a little is enough" (Baruch, Baruch and Goldberg, NeurIPS 2019)."""

from statistics import NormalDist

import numpy as np
import pytest
import torch

from p2pfl.sim.attacks import attacked_messages
from p2pfl.sim.attacks.alie import alie_z
from p2pfl.sim.options import Attack

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_z_is_the_papers_z_max():
    # n = 16, f = 3: s = floor(9) - 3 = 6, z = Phi^-1(10 / 16)
    assert alie_z(16, 3) == pytest.approx(NormalDist().inv_cdf(10 / 16))
    assert alie_z(4, 1) == 0.1  # s = 2, Phi^-1(1/2) = 0: at least 0.1


def test_every_malicious_node_sends_mean_minus_z_std_of_the_honest_models():
    x = torch.randn(8, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bad = np.array([True, False, False, True, False, False, False, False])
    sent = attacked_messages(Attack("alie", 0.25), x, bad, torch.Generator())
    honest = x[~bad]
    expected = honest.mean(dim=0) - alie_z(8, 2) * honest.std(dim=0)
    assert torch.allclose(sent[0], expected) and torch.allclose(sent[3], expected)
    assert torch.equal(sent[~bad], honest)
