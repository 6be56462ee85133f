"""cnn: shapes, seeding, input checks, and it learns 8x8 digits in a few rounds."""

import pytest
import torch

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models import MODELS, build_model
from p2pfl.learning.params import flatten, num_params
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.runner import simulate


def test_output_shape_for_digits_and_larger_colour_images():
    model = build_model("cnn", (1, 8, 8), 10)
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    assert num_params(model) == 16 * 9 + 16 + 32 * 16 * 9 + 32 + 128 * 10 + 10
    assert build_model("cnn", (3, 16, 12), 4)(torch.zeros(2, 3, 16, 12)).shape == (2, 4)


def test_seeding():
    a = build_model("cnn", (1, 8, 8), 10, seed=0)
    assert torch.equal(flatten(a), flatten(build_model("cnn", (1, 8, 8), 10, seed=0)))
    assert not torch.equal(flatten(a), flatten(build_model("cnn", (1, 8, 8), 10, seed=1)))


def test_needs_images_of_at_least_4x4():
    with pytest.raises(LearningSettingError, match=r"model cnn needs image inputs.*\(30,\)"):
        build_model("cnn", (30,), 2)
    with pytest.raises(LearningSettingError, match="at least 4x4"):
        build_model("cnn", (1, 2, 8), 2)


def test_learns_digits_in_a_few_rounds():
    cfg = SimConfig(dataset="digits", model="cnn", nodes=4, rounds=8, local_steps=5, topology="ring",
                    eval_every=8)
    final = simulate(cfg).main.final
    assert final["mean_local_accuracy"] > 0.8, final


def test_registered_with_its_paper():
    assert "LeCun" in MODELS.get("cnn").paper
