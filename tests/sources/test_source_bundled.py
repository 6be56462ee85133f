"""The bundled sources (breast_cancer, digits): shared trials, split and standardised once."""

import numpy as np
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import source_of


def test_bundled_datasets_split_stratified_and_standardised_on_train_only():
    ds = load_dataset("digits", seed=0)
    assert ds.n_classes == 10 and ds.n_features == 64
    assert len(ds.y_train) + len(ds.y_test) == 1797
    train_frac = np.bincount(ds.y_train) / len(ds.y_train)
    test_frac = np.bincount(ds.y_test) / len(ds.y_test)
    assert np.abs(train_frac - test_frac).max() < 0.01
    assert np.abs(ds.x_train.mean(axis=0)).max() < 1e-4
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3  # test data is not re-centred
    bc = load_dataset("breast_cancer")
    assert bc.n_classes == 2 and bc.n_features == 30 and bc.x_train.dtype == np.float32


def test_bundled_sources_are_shared_with_their_input_shapes():
    digits, breast = load_dataset("digits"), load_dataset("breast_cancer")
    assert digits.input_shape == (1, 8, 8) and breast.input_shape == (30,)
    assert breast.feature_names[0] == "mean radius" and digits.feature_names[:2] == ["pixel_0_0", "pixel_0_1"]
    assert source_of("digits")[0].shared and source_of("breast_cancer")[0].shared


def test_bundled_sources_take_no_argument():
    with pytest.raises(LearningSettingError, match="digits takes no argument"):
        load_dataset("digits:8")
