"""Both simulator engines agree for a CNN and for models with buffers; buffers are never mixed;
a model vmap cannot run is one clear error in the vectorized engine."""

import pytest
import torch
from torch import nn

from p2pfl.errors import UserError
from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.models import build_model
from p2pfl.learning.params import flatten
from p2pfl.learning.trainer import OptimConfig
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.metrics import node_accuracies
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.runner import prepare
from p2pfl.sim.vectorized import VectorizedEngine


class Scaled(nn.Module):
    """A fixed (non-trainable) per-pixel scale, registered as a buffer and used in forward."""

    def __init__(self, input_shape, n_classes):
        super().__init__()
        self.register_buffer("scale", torch.linspace(0.5, 1.5, int(torch.tensor(input_shape).prod()))
                             .reshape(input_shape))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(self.scale.numel(), 16), nn.ReLU(),
                                 nn.Linear(16, n_classes))

    def forward(self, x):
        return self.net(x * self.scale)


def _batchnorm(input_shape, n_classes):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 64, n_classes))


class Branchy(nn.Module):
    """Data-dependent control flow: fine for one module, impossible under vmap."""

    def __init__(self, input_shape, n_classes):
        super().__init__()
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) if x.sum() > 0 else self.fc(-x)


def _run_both(model, rounds=3):
    ds, data, topo = prepare(SimConfig(dataset="digits", nodes=4, topology="ring", seed=0))
    opt = OptimConfig(name="sgd", lr=0.05)
    engines = [cls(model, data, opt, flatten(model)) for cls in (ReferenceEngine, VectorizedEngine)]
    plan = BatchPlan(data.sizes, 32, 2, None, seed=0)
    for t in range(rounds):
        losses = [e.local_round(plan.round(t)) for e in engines]
        for e in engines:
            e.mix(topo.mixing(t))
    return engines, losses, data


def _assert_agree(engines, losses):
    ref, vec = engines
    assert (ref.params() - vec.params()).abs().max().item() < 1e-5
    assert torch.allclose(torch.as_tensor(losses[0]), torch.as_tensor(losses[1]), atol=1e-5)
    rb, vb = ref.buffers(), vec.buffers()
    assert rb.keys() == vb.keys()
    for k in rb:
        assert torch.allclose(rb[k].to(vb[k].dtype), vb[k], atol=1e-5), k


def test_engines_agree_for_cnn_on_digits_4_nodes_3_rounds():
    engines, losses, data = _run_both(build_model("cnn", (1, 8, 8), 10, seed=0))
    _assert_agree(engines, losses)
    assert data.x.shape[1:] == (1, 8, 8) and data.x_test.shape[1:] == (1, 8, 8)
    assert engines[0].params().std(dim=0).max() > 0  # the nodes trained apart


def test_engines_agree_for_a_model_with_a_fixed_buffer():
    torch.manual_seed(0)
    model = Scaled((1, 8, 8), 10)
    engines, losses, _ = _run_both(model)
    _assert_agree(engines, losses)
    for e in engines:  # the buffer is each node's own and unchanged
        assert torch.equal(e.buffers()["scale"], model.scale.expand(4, 1, 8, 8))


def test_batchnorm_running_statistics_are_per_node_local_and_agree():
    torch.manual_seed(0)
    model = _batchnorm((1, 8, 8), 10)
    engines, losses, data = _run_both(model)
    _assert_agree(engines, losses)
    ref, vec = engines
    stats = vec.buffers()["1.running_mean"]
    assert not torch.allclose(stats[0], stats[1])  # each node's own data: not mixed
    assert torch.equal(vec.buffers()["1.num_batches_tracked"], torch.full((4,), 6))
    # eval-mode accuracy uses each node's running statistics, the same in both engines
    accs = [node_accuracies(model, e.params(), data.x_test, data.y_test, e.buffers()) for e in engines]
    assert torch.allclose(accs[0], accs[1], atol=1e-6)


def test_a_model_vmap_cannot_run_is_one_error_pointing_to_the_reference_engine():
    torch.manual_seed(0)
    model = Branchy((1, 8, 8), 10)
    _, data, _ = prepare(SimConfig(dataset="digits", nodes=4, topology="ring"))
    with pytest.raises(UserError, match=r"model 'branchy' cannot run in the vectorized engine .*"
                                        r"data-dependent control flow.*use --engine reference"):
        VectorizedEngine(model, data, OptimConfig(), flatten(model), name="branchy")
    ref = ReferenceEngine(model, data, OptimConfig(), flatten(model))  # runs any module
    ref.local_round(BatchPlan(data.sizes, 8, 1).round(0))
    acc = node_accuracies(model, ref.params(), data.x_test, data.y_test, ref.buffers())
    assert acc.shape == (4,) and (acc > 0).all()
