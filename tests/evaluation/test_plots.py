"""ROC and calibration plots write valid PNGs, binary and one-vs-rest, even for a single class."""

import warnings

import numpy as np
import pytest
from matplotlib.image import imread

from p2pfl.evaluation.plots import calibration_plot, roc_plot

PNG = b"\x89PNG\r\n\x1a\n"


def rows(n_classes, n=120, single=False):
    rng = np.random.default_rng(n_classes)
    y = np.zeros(n, int) if single else rng.integers(0, n_classes, n)
    return y, rng.dirichlet(np.ones(n_classes), n) * 0.5 + 0.5 * np.eye(n_classes)[y]


@pytest.mark.parametrize("plot", [roc_plot, calibration_plot])
@pytest.mark.parametrize("n_classes,single", [(2, False), (3, False), (2, True), (3, True)])
def test_the_plot_is_a_png(plot, n_classes, single, tmp_path, capfd):
    y, probs = rows(n_classes, single=single)
    path = tmp_path / "plots" / f"{plot.__name__}.png"  # the folder is made
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot(y, probs, [f"class {k}" for k in range(n_classes)], path) == path
    assert path.read_bytes()[:8] == PNG
    image = imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 300 and image.std() > 0  # something is drawn
    assert capfd.readouterr() == ("", "")
