"""A seeded synthetic multi-site classification task (`synthetic[:k=v,...]`)."""

from __future__ import annotations

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import DataSource, Request, Table
from p2pfl.registry import Param
from p2pfl.spec import key_values, number

BLOCK_ROWS = 8192  # rows generated at a time

PARAMS = (
    Param("sites", 16, "number of sites (default: the number of nodes)"),
    Param("samples", 100, "rows per site"),
    Param("features", 32, "feature columns"),
    Param("classes", 4, "number of classes"),
    Param("shift", 0.5, "standard deviation of each site's feature offset"),
)


def synthetic(
    sites: float, samples: float, features: float, classes: float, shift: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded multi-site classification task.

    Each class is a mixture of two Gaussian clusters (so it is not linearly separable), and each
    site adds its own offset drawn from N(0, shift^2) to every feature (covariate shift between
    hospitals). Returns features, labels and the site of each row.
    """
    n_sites, per_site, dim, n_cls = int(sites), int(samples), int(features), int(classes)
    if min(n_sites, per_site, dim) < 1 or n_cls < 2 or shift < 0:
        raise LearningSettingError("synthetic dataset needs sites, samples, features >= 1, classes >= 2, "
                                   "shift >= 0")
    rng = np.random.default_rng([seed, 0x5EED])
    centers = rng.normal(0.0, 0.6, size=(n_cls, 2, dim))
    offsets = rng.normal(0.0, shift, size=(n_sites, dim))
    n = n_sites * per_site
    site = np.repeat(np.arange(n_sites), per_site)
    y = rng.integers(0, n_cls, size=n)
    cluster = rng.integers(0, 2, size=n)
    # (center + offset) + noise, in blocks of rows so that no temporary is as large as x; the
    # generator draws the same stream whether asked for all rows at once or block by block.
    x = np.empty((n, dim))
    noise = np.empty((min(n, BLOCK_ROWS), dim))
    for a in range(0, n, BLOCK_ROWS):
        rows = slice(a, min(n, a + BLOCK_ROWS))
        out = x[rows]
        z = noise[: len(out)]
        np.add(centers[y[rows], cluster[rows]], offsets[site[rows]], out=out)
        rng.standard_normal(out=z)
        out += z
    return x, y.astype(np.int64), site.astype(np.int64)


def options(request: Request) -> dict[str, float]:
    """The parameters of `synthetic:k=v,...`: defaults, `sites` = the number of nodes, then the spec's."""
    out: dict[str, float] = {p.key: float(p.default) for p in PARAMS}  # type: ignore[arg-type]
    if request.nodes is not None:
        out["sites"] = request.nodes
    for key, value in key_values(request.spec, request.argument, LearningSettingError).items():
        if key not in out:
            raise LearningSettingError(f"{request.spec!r}: parameter {key!r} is not one of "
                            f"{', '.join(p.key + '=...' for p in PARAMS)}")
        out[key] = number(f"{request.spec!r}: parameter {key}", value, LearningSettingError)
    return out


def _load(request: Request) -> Table:
    x, y, site = synthetic(**options(request), seed=request.seed)
    return Table("synthetic", x, y, [f"x{i}" for i in range(x.shape[1])], site)


COMPONENT = DataSource(
    name="synthetic",
    summary="seeded multi-site Gaussian-mixture task with covariate shift between sites; a trial",
    shared=True,
    load=_load,
    params=PARAMS,
    argument="k=v,...",
)
