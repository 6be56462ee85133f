"""mlp: the registry's member builds today's nn.Sequential, and flattens images itself."""

import pytest
import torch
from torch import nn

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models import MODELS, build_model, parse_hidden
from p2pfl.learning.params import fingerprint, flatten


def _by_hand(features: int, classes: int, hidden: tuple[int, ...], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(features, h), nn.ReLU()]
        features = h
    return nn.Sequential(*layers, nn.Linear(features, classes))


@pytest.mark.parametrize("hidden", [(32,), (16, 8)])
def test_flat_input_gives_the_hand_built_sequential_bit_for_bit(hidden):
    model = build_model("mlp", (30,), 2, hidden, seed=1)
    hand = _by_hand(30, 2, hidden, 1)
    assert isinstance(model, nn.Sequential)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in hand.named_parameters()]
    assert torch.equal(flatten(model), flatten(hand))
    assert fingerprint(model) == fingerprint(hand)


def test_seeding():
    a = build_model("mlp", (6,), 2, (8,), seed=3)
    assert torch.equal(flatten(a), flatten(build_model("mlp", (6,), 2, (8,), seed=3)))
    assert not torch.equal(flatten(a), flatten(build_model("mlp", (6,), 2, (8,), seed=4)))


def test_image_input_flattens_with_the_same_weights_names_and_outputs():
    image = build_model("mlp", (1, 8, 8), 10, (32,), seed=0)
    flat = build_model("mlp", (64,), 10, (32,), seed=0)
    assert torch.equal(flatten(image), flatten(flat))
    assert fingerprint(image) == fingerprint(flat)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(image(x), flat(x.reshape(4, 64)))


def test_parse_hidden_and_unknown_models():
    assert parse_hidden("32,16") == (32, 16) and parse_hidden(None) == (32,)
    with pytest.raises(LearningSettingError, match="--hidden"):
        parse_hidden("0")
    with pytest.raises(LearningSettingError, match=r"unknown model .resnet.; choose one of cnn, logreg, mlp "
                                                   r"or python:"):
        build_model("resnet", (4,), 2)
    assert MODELS.names() == ("cnn", "logreg", "mlp")
