"""The Gaussian-noise attack."""

import numpy as np
import pytest
import torch

from p2pfl.sim.attacks import attacked_messages
from p2pfl.sim.options import Attack

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BAD = np.array([True, False] * 50)


def _sent(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = 3.0 * torch.randn(100, 2000, generator=torch.Generator().manual_seed(0))
    return x, attacked_messages(Attack("gaussian", 0.5), x, BAD, torch.Generator().manual_seed(seed))


def test_noise_has_the_honest_models_scale_and_zero_mean():
    x, sent = _sent(1)
    rms = x[~BAD].double().pow(2).mean().sqrt().item()
    noise = sent[BAD].double()
    assert noise.std().item() == pytest.approx(rms, rel=0.01)
    assert abs(noise.mean().item()) < 0.01 * rms
    assert torch.equal(sent[~BAD], x[~BAD])
    assert not torch.equal(sent[0], sent[2])  # each malicious node draws its own noise


def test_noise_is_drawn_from_the_run_generator():
    assert torch.equal(_sent(1)[1], _sent(1)[1])
    assert not torch.equal(_sent(1)[1], _sent(2)[1])
