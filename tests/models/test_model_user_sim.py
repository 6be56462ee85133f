"""A person's own model module, on sys.path, trains in the simulator with both engines."""

import sys

import pytest

from p2pfl.errors import UserError
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.runner import simulate

USERMODEL = '''
import math

import torch
from torch import nn


class Scaled(nn.Module):
    def __init__(self, input_shape, n_classes):
        super().__init__()
        self.register_buffer("scale", torch.full(input_shape, 0.5))  # not trained, not mixed
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 24), nn.Tanh(),
                                 nn.Linear(24, n_classes))

    def forward(self, x):
        return self.net(x * self.scale)


def make(input_shape, n_classes):
    return Scaled(input_shape, n_classes)


class Branchy(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)) if x.sum() > 0 else self.fc(x.flatten(1))


def branchy(input_shape, n_classes):
    return Branchy(n_classes)
'''


@pytest.fixture
def usermodel(tmp_path, monkeypatch):
    (tmp_path / "usermodel.py").write_text(USERMODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usermodel"
    sys.modules.pop("usermodel", None)


def _cfg(**kw):
    return SimConfig(dataset="digits", nodes=4, rounds=6, local_steps=3, topology="ring", eval_every=6, **kw)


def test_user_model_trains_in_both_engines_alike(usermodel):
    vec = simulate(_cfg(model="python:usermodel:make")).main.final
    ref = simulate(_cfg(model="python:usermodel:make", engine="reference")).main.final
    assert vec["mean_local_accuracy"] > 0.7, vec
    for key in ("mean_local_accuracy", "averaged_model_accuracy", "train_loss"):
        assert abs(vec[key] - ref[key]) < 1e-5, key


def test_a_user_model_vmap_cannot_run_needs_the_reference_engine(usermodel):
    with pytest.raises(UserError, match=r"model 'python:usermodel:branchy' cannot run in the vectorized "
                                        r"engine .*use --engine reference"):
        simulate(_cfg(model="python:usermodel:branchy"))
    final = simulate(_cfg(model="python:usermodel:branchy", engine="reference")).main.final
    assert final["mean_local_accuracy"] > 0.5, final
