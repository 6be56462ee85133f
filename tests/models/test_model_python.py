"""`python:MODULE:FUNCTION`: a person's own model; every way it can go wrong is one UserError."""

import sys
import textwrap

import pytest
import torch

from p2pfl.errors import UserError
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models import build_model, check_model_spec
from p2pfl.learning.params import flatten
from p2pfl.settings.load import node_settings

SOURCE = '''
import torch
from torch import nn

def make(input_shape, n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), n_classes))

def boom(input_shape, n_classes):
    raise ValueError("no GPU here")

def not_a_module(input_shape, n_classes):
    return 5

def wrong_shape(input_shape, n_classes):
    return nn.Linear(input_shape[-1], n_classes + 1)

class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("forgot the layers")

def broken_forward(input_shape, n_classes):
    return Broken()

NOT_CALLABLE = 3
'''


@pytest.fixture
def usermodels(tmp_path, monkeypatch):
    """Modules p2pfl_um_ok (the factories above) and p2pfl_um_syntax (does not compile)."""
    (tmp_path / "p2pfl_um_ok.py").write_text(textwrap.dedent(SOURCE))
    (tmp_path / "p2pfl_um_syntax.py").write_text("def make(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("p2pfl_um_ok", "p2pfl_um_syntax"):
        sys.modules.pop(name, None)


def test_a_good_factory_builds_seeded_and_restores_the_rng(usermodels):
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a = build_model("python:p2pfl_um_ok:make", (4,), 3, seed=1)
    assert torch.equal(torch.rand(2), expected)
    assert a(torch.zeros(7, 4)).shape == (7, 3)
    assert torch.equal(flatten(a), flatten(build_model("python:p2pfl_um_ok:make", (4,), 3, seed=1)))
    assert not torch.equal(flatten(a), flatten(build_model("python:p2pfl_um_ok:make", (4,), 3, seed=2)))


@pytest.mark.parametrize("spec,message", [
    ("python:p2pfl_um_ok", "must be of the form python:MODULE:FUNCTION"),
    ("python:p2pfl_um_ok:", "must be of the form"),
    ("python:1bad:make", "must be of the form"),
    ("python:a..b:make", "must be of the form"),
    ("python:p2pfl_um_ok:make:extra", "must be of the form"),
    ("python:p2pfl_no_such_module:make", "cannot import module 'p2pfl_no_such_module': ModuleNotFoundError"),
    ("python:p2pfl_um_syntax:make", "cannot import module 'p2pfl_um_syntax': SyntaxError"),
    ("python:p2pfl_um_ok:nothing", "module 'p2pfl_um_ok' has no function 'nothing'"),
    ("python:p2pfl_um_ok:NOT_CALLABLE", "p2pfl_um_ok.NOT_CALLABLE is not callable"),
    ("python:p2pfl_um_ok:not_a_module", "returned int, not a torch nn.Module"),
    ("python:p2pfl_um_ok:wrong_shape", r"gave output \[2, 4\], expected \[2, 3\]"),
    ("python:p2pfl_um_ok:broken_forward", "forward pass .* raised RuntimeError: forgot the layers"),
    ("python:p2pfl_um_ok:boom", r"boom\(\(4,\), 3\) raised ValueError: no GPU here"),
])
def test_each_failure_is_one_user_error_naming_the_spec(usermodels, spec, message):
    with pytest.raises(LearningSettingError, match=message) as err:
        build_model(spec, (4,), 3)
    assert repr(spec) in str(err.value) and "\n" not in str(err.value)


def test_check_model_spec_checks_only_the_form():
    check_model_spec("python:p2pfl_no_such_module:make")  # not imported
    check_model_spec("cnn")
    for bad in ("python:", "python:x", "resnet"):
        with pytest.raises(LearningSettingError):
            check_model_spec(bad)


def test_node_config_validates_model_kind_with_the_registry(write_config):
    for kind in ("cnn", "python:hospital_models.net:make"):
        path = write_config(('kind = "mlp"', f'kind = "{kind}"'))
        assert node_settings(path).model.kind == kind
    path = write_config(('kind = "mlp"', 'kind = "python:oops"'))
    with pytest.raises(UserError, match="model.kind is not valid: model 'python:oops' must be of the form"):
        node_settings(path)
