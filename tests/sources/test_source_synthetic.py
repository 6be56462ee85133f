"""The synthetic source: seeded, multi-site, parameters parsed by the project's k=v parser."""

import numpy as np
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import source_of


def test_synthetic_is_seeded_and_has_sites():
    a = load_dataset("synthetic:sites=5,samples=20,features=4,classes=3", seed=1)
    b = load_dataset("synthetic:sites=5,samples=20,features=4,classes=3", seed=1)
    assert np.array_equal(a.x_train, b.x_train)
    assert a.n_features == 4 and a.n_classes == 3
    assert set(a.site_train.tolist()) == set(range(5))
    assert load_dataset("synthetic", nodes=7).site_train.max() == 6
    with pytest.raises(LearningSettingError, match="not one of"):
        load_dataset("synthetic:color=3")


def test_synthetic_defaults_seed_and_shape():
    ds = load_dataset("synthetic", nodes=4)
    assert len(ds.y_train) + len(ds.y_test) == 4 * 100 and ds.n_features == 32 and ds.n_classes == 4
    assert ds.input_shape == (32,) and source_of("synthetic")[0].shared
    other = load_dataset("synthetic", nodes=4, seed=1)
    assert not np.array_equal(ds.x_train, other.x_train)
    assert load_dataset("synthetic:sites=3", nodes=7).site_train.max() == 2  # the spec wins


@pytest.mark.parametrize("spec,match", [
    ("synthetic:sites", "is not of the form key=value"),
    ("synthetic:sites=2,sites=3", "given twice"),
    ("synthetic:shift=far", "parameter shift must be a number, got 'far'"),
    ("synthetic:classes=1", "classes >= 2"),
])
def test_synthetic_bad_parameters(spec, match):
    with pytest.raises(LearningSettingError, match=match):
        load_dataset(spec)


def test_synthetic_rows_do_not_depend_on_the_block_size(monkeypatch):
    import p2pfl.learning.sources.synthetic as synthetic

    whole = synthetic.synthetic(30, 50, 5, 3, 0.5, seed=2)
    monkeypatch.setattr(synthetic, "BLOCK_ROWS", 37)
    blocks = synthetic.synthetic(30, 50, 5, 3, 0.5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(whole, blocks, strict=True))
