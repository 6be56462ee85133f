"""The vectorized engine must compute what the readable reference loop computes."""

import pytest
import torch

from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.models import build_model
from p2pfl.learning.params import flatten
from p2pfl.learning.trainer import OptimConfig
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.runner import prepare
from p2pfl.sim.vectorized import VectorizedEngine


def _run_both(optimizer, local_steps, local_epochs, rounds, partition="iid", topology="ring"):
    cfg = SimConfig(dataset="digits", nodes=8, topology=topology, partition=partition, seed=0)
    ds, data, topo = prepare(cfg)
    model = build_model("mlp", ds.input_shape, ds.n_classes, (32,), seed=0)
    opt = OptimConfig(name=optimizer, lr=0.01 if optimizer == "adam" else 0.05)
    engines = [cls(model, data, opt, flatten(model)) for cls in (ReferenceEngine, VectorizedEngine)]
    plan = BatchPlan(data.sizes, 32, local_steps, local_epochs, seed=0)
    for t in range(rounds):
        steps = plan.round(t)
        losses = [e.local_round(steps) for e in engines]
        for e in engines:
            e.mix(topo.mixing(t))
    return engines[0].params(), engines[1].params(), losses, flatten(model)


def test_engines_agree_after_20_rounds_digits_8_nodes_ring_2_steps():
    ref, vec, losses, start = _run_both("sgd", 2, None, 20)
    assert (ref - vec).abs().max().item() < 1e-5
    assert torch.allclose(torch.as_tensor(losses[0]), torch.as_tensor(losses[1]), atol=1e-5)
    _assert_trained(ref, start)
    assert float(losses[0].mean()) < 1.0  # digits starts near ln(10) = 2.3


def _assert_trained(params: torch.Tensor, start: torch.Tensor) -> None:
    """Every node moved away from the shared start, and the nodes are not all alike."""
    assert bool(((params - start).abs().amax(dim=1) > 1e-2).all())
    assert (params - params.mean(dim=0)).abs().max().item() > 1e-6


@pytest.mark.parametrize("optimizer,steps,epochs,partition,topology", [
    ("adam", 2, None, "iid", "ring"),
    ("sgd", None, 1, "quantity:0.5", "epidemic"),
    ("adam", None, 1, "dirichlet:0.3", "one_peer_exponential"),
])
def test_engines_agree_for_adam_epochs_uneven_data_and_time_varying_graphs(
        optimizer, steps, epochs, partition, topology):
    ref, vec, _, start = _run_both(optimizer, steps, epochs, 5, partition, topology)
    assert (ref - vec).abs().max().item() < 1e-5
    _assert_trained(ref, start)


def test_mixing_writes_into_a_spare_buffer_but_never_one_handed_out():
    cfg = SimConfig(dataset="digits", nodes=8, topology="exponential", partition="iid", seed=0)
    ds, data, topo = prepare(cfg)
    model = build_model("mlp", ds.input_shape, ds.n_classes, (16,), seed=0)
    engine = VectorizedEngine(model, data, OptimConfig("sgd", lr=0.05), flatten(model))
    engine.local_round(BatchPlan(data.sizes, 32, 1, seed=0).round(0))
    held = engine.params()
    kept = held.clone()
    expected = kept
    w = topo.mixing(0)
    for _ in range(4):
        engine.mix(w)
        expected = torch.sparse.mm(torch.from_numpy(w.toarray()).float().to_sparse_csr(), expected)
    assert torch.equal(held, kept)
    assert (engine.params() - expected).abs().max().item() < 1e-6
