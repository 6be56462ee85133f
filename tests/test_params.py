import torch

from p2pfl.learning.models import build_model
from p2pfl.learning.params import fingerprint, flatten, load_flat, num_params, param_specs, unflatten


def test_flatten_unflatten_round_trip():
    model = build_model("mlp", 5, 3, (4, 2), seed=1)
    flat = flatten(model)
    assert flat.shape == (num_params(model),) == (5 * 4 + 4 + 4 * 2 + 2 + 2 * 3 + 3,)
    views = unflatten(flat, param_specs(model))
    for (name, p), (vname, v) in zip(model.named_parameters(), views.items(), strict=True):
        assert name == vname and torch.equal(p, v)


def test_unflatten_keeps_leading_node_dimension():
    model = build_model("logreg", 4, 3)
    stacked = torch.stack([flatten(model), flatten(model) + 1])
    views = unflatten(stacked, param_specs(model))
    assert views["0.weight"].shape == (2, 3, 4)
    assert torch.equal(views["0.bias"][1], model[0].bias + 1)


def test_load_flat_copies_values():
    model = build_model("mlp", 3, 2, (4,))
    target = torch.arange(num_params(model), dtype=torch.float32)
    load_flat(model, target)
    assert torch.equal(flatten(model), target)


def test_same_seed_same_weights_and_rng_untouched():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = build_model("mlp", 6, 2, (8,), seed=3)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert torch.equal(flatten(a), flatten(build_model("mlp", 6, 2, (8,), seed=3)))


def test_fingerprint_depends_on_names_shapes_dtypes_only():
    a = build_model("mlp", 6, 2, (8,), seed=1)
    b = build_model("mlp", 6, 2, (8,), seed=2)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(build_model("mlp", 6, 2, (9,)))
    assert fingerprint(a) != fingerprint(build_model("logreg", 6, 2))
    assert fingerprint(a) != fingerprint(a.double())
    assert len(fingerprint(a)) == 64
