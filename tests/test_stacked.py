"""Linear/ReLU models run as batched products give vmap's numbers bit for bit, in training
(losses, gradients, parameters after SGD with momentum) and in evaluation."""

import pytest
import torch
from torch import nn

from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.models import build_model
from p2pfl.learning.models._component import FlatSequential
from p2pfl.learning.params import flatten
from p2pfl.learning.trainer import OptimConfig
from p2pfl.settings.sim import SimConfig
from p2pfl.sim import metrics, stacked
from p2pfl.sim.runner import prepare
from p2pfl.sim.vectorized import VectorizedEngine


def _trained(model_name, hidden, use_stacked):
    cfg = SimConfig(dataset="digits", nodes=6, topology="ring", partition="dirichlet:0.5", seed=1)
    ds, data, topo = prepare(cfg)
    model = build_model(model_name, ds.input_shape, ds.n_classes, hidden, seed=0)
    engine = VectorizedEngine(model, data, OptimConfig("sgd", lr=0.05, momentum=0.9), flatten(model))
    if not use_stacked:
        engine._layers = None  # the vmap path
    plan = BatchPlan(data.sizes, 16, local_epochs=1, seed=0)  # uneven shards: masked rows
    losses = []
    for t in range(4):
        losses.append(engine.local_round(plan.round(t)))
        engine.mix(topo.mixing(t))
    return engine.params(), losses, model, data


@pytest.mark.parametrize(("model_name", "hidden"), [("mlp", (32,)), ("mlp", (24, 8)), ("logreg", ())])
def test_training_matches_vmap_bit_for_bit(model_name, hidden):
    fast, fast_losses, model, _ = _trained(model_name, hidden, True)
    slow, slow_losses, _, _ = _trained(model_name, hidden, False)
    assert stacked.linear_layers(model) is not None
    assert torch.equal(fast, slow)
    assert all((a == b).all() for a, b in zip(fast_losses, slow_losses, strict=True))


def test_evaluation_matches_vmap_bit_for_bit(monkeypatch):
    params, _, model, data = _trained("mlp", (32,), True)
    fast = metrics.node_accuracies(model, params, data.x_test, data.y_test, {})
    monkeypatch.setattr(stacked, "linear_layers", lambda m: None)
    assert torch.equal(fast, metrics.node_accuracies(model, params, data.x_test, data.y_test, {}))


def test_other_models_take_vmap():
    assert stacked.linear_layers(build_model("cnn", (1, 8, 8), 10, (), seed=0)) is None
    assert stacked.linear_layers(FlatSequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))) is None
    assert stacked.linear_layers(FlatSequential(nn.Linear(4, 4), nn.BatchNorm1d(4))) is None
    assert stacked.linear_layers(nn.Sequential(nn.Linear(4, 2))) is None
