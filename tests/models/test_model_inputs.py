"""What models are handed: [rows, *input_shape] everywhere; digits rows are 8x8 images."""

import numpy as np
import pytest
import torch

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.local import load_local
from p2pfl.learning.partition import partition
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.data import NodeData
from p2pfl.sim.runner import validate


def test_input_shapes_of_the_datasets():
    digits = load_dataset("digits")
    assert digits.input_shape == (1, 8, 8) and digits.x_train.shape[1] == 64  # arrays stay flat
    assert load_dataset("breast_cancer").input_shape == (30,)
    assert load_dataset("synthetic:features=5,sites=2").input_shape == (5,)


def test_node_data_is_the_flat_rows_reshaped_after_the_feature_shift():
    ds = load_dataset("digits")
    part = partition("shift:0.5", ds.y_train, 3, seed=1, n_features=ds.n_features)
    data = NodeData.build(ds, part)
    assert data.input_shape == (1, 8, 8) and data.x_test.shape == (len(ds.y_test), 1, 8, 8)
    x, _ = data.node(2)
    flat = ds.x_train[part.indices[2]] + part.feature_shift[2]
    assert torch.equal(x, torch.from_numpy(flat.astype(np.float32)).reshape(-1, 1, 8, 8))
    assert data.pooled().input_shape == (1, 8, 8)


def test_local_data_of_a_daemon_has_the_same_shapes():
    shard = load_local("digits", 1, 3)
    assert shard.input_shape == (1, 8, 8) and shard.n_features == 64
    assert shard.x_val.shape[1:] == (1, 8, 8) and len(shard.x_train) == len(shard.y_train)
    assert load_local("breast_cancer", 0, 2).x_train.shape[1:] == (30,)


def test_simulate_checks_the_model_before_loading_data():
    with pytest.raises(LearningSettingError, match="unknown model 'resnet'"):
        validate(SimConfig(model="resnet"))
    validate(SimConfig(model="python:somewhere.else:make"))  # only the form
