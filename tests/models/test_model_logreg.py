"""logreg: the registry's member builds today's nn.Sequential, and flattens images itself."""

import torch
from torch import nn

from p2pfl.learning.models import MODELS, build_model
from p2pfl.learning.params import fingerprint, flatten


def _by_hand(features: int, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, classes))


def test_flat_input_gives_the_hand_built_sequential_bit_for_bit():
    for seed in (0, 3):
        model = build_model("logreg", (30,), 2, seed=seed)
        hand = _by_hand(30, 2, seed)
        assert isinstance(model, nn.Sequential)
        assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
        assert torch.equal(flatten(model), flatten(hand))
        assert fingerprint(model) == fingerprint(hand)


def test_an_int_is_a_flat_input_shape_and_the_global_rng_is_restored():
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    model = build_model("logreg", 5, 3, seed=7)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(flatten(model), flatten(build_model("logreg", (5,), 3, seed=7)))


def test_image_input_flattens_with_the_same_weights_names_and_outputs():
    image = build_model("logreg", (1, 8, 8), 10, seed=0)
    flat = build_model("logreg", (64,), 10, seed=0)
    assert torch.equal(flatten(image), flatten(flat))
    assert fingerprint(image) == fingerprint(flat)  # checkpoints of digits runs stay valid
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(image(x), flat(x.reshape(4, 64)))


def test_registered_with_a_summary():
    assert "logreg" in MODELS and MODELS.get("logreg").summary


def test_a_model_built_for_the_flat_size_also_takes_the_images():
    assert build_model("logreg", 64, 10)(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
