"""The bundled digits source: a shared trial of 8x8 images, split and standardised once."""

import numpy as np
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import source_of


def test_digits_is_split_stratified_and_standardised_on_train_only():
    ds = load_dataset("digits", seed=0)
    assert ds.n_classes == 10 and ds.n_features == 64
    assert len(ds.y_train) + len(ds.y_test) == 1797
    train_frac = np.bincount(ds.y_train) / len(ds.y_train)
    test_frac = np.bincount(ds.y_test) / len(ds.y_test)
    assert np.abs(train_frac - test_frac).max() < 0.01
    assert np.abs(ds.x_train.mean(axis=0)).max() < 1e-4
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3  # test data is not re-centred


def test_digits_rows_are_images_and_the_source_is_shared():
    digits = load_dataset("digits")
    assert digits.input_shape == (1, 8, 8) and digits.feature_names[:2] == ["pixel_0_0", "pixel_0_1"]
    assert source_of("digits")[0].shared


def test_digits_takes_no_argument():
    with pytest.raises(LearningSettingError, match="digits takes no argument"):
        load_dataset("digits:8")
