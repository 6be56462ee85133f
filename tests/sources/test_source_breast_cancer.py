"""The bundled breast_cancer source: a shared trial table of 30 features."""

import numpy as np
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import source_of


def test_breast_cancer_is_a_shared_table_of_30_features():
    bc = load_dataset("breast_cancer")
    assert bc.n_classes == 2 and bc.n_features == 30 and bc.x_train.dtype == np.float32
    assert bc.input_shape == (30,) and bc.feature_names[0] == "mean radius"
    assert len(bc.y_train) + len(bc.y_test) == 569
    assert source_of("breast_cancer")[0].shared


def test_breast_cancer_takes_no_argument():
    with pytest.raises(LearningSettingError, match="breast_cancer takes no argument"):
        load_dataset("breast_cancer:x")
