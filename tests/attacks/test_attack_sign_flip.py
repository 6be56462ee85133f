"""The sign-flipping attack."""

import numpy as np
import pytest
import torch

from p2pfl.settings.sim import SimConfig
from p2pfl.sim.attacks import attacked_messages, poisoned_data
from p2pfl.sim.options import Attack
from p2pfl.sim.runner import simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS = dict(dataset="digits", nodes=16, topology="exponential", rounds=50, eval_every=50, seed=1)


def final(**kw) -> float:
    return simulate(SimConfig(**{**DIGITS, **kw})).main.final["mean_local_accuracy"]


def test_the_malicious_rows_are_negated_and_the_others_kept():
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    bad = np.array([False, True, False, False, True])
    sent = attacked_messages(Attack("sign_flip", 0.4), x, bad, torch.Generator().manual_seed(1))
    assert torch.equal(sent[bad], -x[bad]) and torch.equal(sent[~bad], x[~bad])
    nobody = np.zeros(5, dtype=bool)
    assert torch.equal(attacked_messages(Attack("sign_flip", 0.0), x, nobody, torch.Generator()), x)
    data = object()
    assert poisoned_data(Attack("sign_flip", 0.4), data, bad) is data  # trains on its own data


def test_sign_flip_breaks_averaging_but_not_robust_aggregators():
    # seed 1: clean 0.947; sign flip 20% (3 of 16): mean 0.100, trimmed mean b=3 0.938,
    # clipped delta=0.5 0.939. On degree 7, trimmed_mean:b=3 keeps the two middle values.
    clean = final()
    attacked_mean = final(attack="sign_flip:0.2")
    trimmed = final(attack="sign_flip:0.2", aggregator="trimmed_mean:b=3")
    clipped = final(attack="sign_flip:0.2", aggregator="clipped:delta=0.5")
    assert clean > 0.9
    assert clean - attacked_mean > 0.20
    assert clean - trimmed < 0.03
    assert clean - clipped < 0.03
