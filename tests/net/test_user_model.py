"""Two real node processes train a person's own model (`kind = "python:usermodel:make"`)."""

import os
import sys

import torch

from p2pfl.net.checkpoint import CHECKPOINT

USERMODEL = '''
import math

import torch
from torch import nn


class Scaled(nn.Module):
    def __init__(self, input_shape, n_classes):
        super().__init__()
        self.register_buffer("scale", torch.full(input_shape, 0.5))  # local, never sent
        self.net = nn.Sequential(nn.Linear(math.prod(input_shape), 16), nn.ReLU(), nn.Linear(16, n_classes))

    def forward(self, x):
        return self.net(x.flatten(1) * self.scale.flatten())


def make(input_shape, n_classes):
    return Scaled(input_shape, n_classes)
'''


def test_two_nodes_train_a_user_model_from_pythonpath(consortium, tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "usermodel.py").write_text(USERMODEL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")])))
    c = consortium("run", nodes=2, rounds=2, round_timeout=5.0, partition="iid")
    c.configure("model", 'kind = "python:usermodel:make"')
    c.start(program=[sys.executable, "-m", "p2pfl", "node"])  # a new interpreter reads PYTHONPATH
    assert c.wait() == {name: 0 for name in c.names}, [c.log(n) for n in c.names]
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == [0, 1]
        assert all(not r["missing"] for r in rows)
        assert rows[-1]["val_accuracy"] > 0.6
        state = torch.load(c.folder / name / "state" / CHECKPOINT, weights_only=True)
        assert torch.equal(state["model"]["scale"], torch.full((30,), 0.5))  # the buffer stayed as built


def test_two_nodes_train_the_cnn_on_digits_as_8x8_images(consortium):
    c = consortium("cnn", nodes=2, rounds=3, round_timeout=5.0, dataset="digits", partition="iid")
    c.configure("model", 'kind = "cnn"')
    c.start()
    assert c.wait() == {name: 0 for name in c.names}, [c.log(n) for n in c.names]
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == [0, 1, 2] and all(not r["missing"] for r in rows)
        assert rows[-1]["val_accuracy"] > 0.4  # ten classes: chance is 0.1; 0.6 in the simulator
        state = torch.load(c.folder / name / "state" / CHECKPOINT, weights_only=True)
        assert state["model"]["0.weight"].shape[1:] == (1, 3, 3)  # convolutions over 1-channel images
