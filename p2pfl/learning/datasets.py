"""Datasets: scikit-learn's bundled tables, a seeded synthetic multi-site task, and CSV files.

Every loader returns a `Dataset` already split (stratified) into train and test, with features
standardised by statistics of the training split only.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from p2pfl.errors import UserError

BUNDLED = ("breast_cancer", "digits")
IMAGE_SHAPES = {"digits": (1, 8, 8)}  # bundled tables whose rows are images (channels, height, width)
SYNTHETIC_DEFAULTS = {"sites": 16, "samples": 100, "features": 32, "classes": 4, "shift": 0.5}


@dataclass
class Dataset:
    """A train/test split of a classification table. Arrays are float32 / int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    feature_names: list[str]
    site_train: np.ndarray | None = None  # site label per training row, when the data has one
    input_shape: tuple[int, ...] = ()  # shape of one example for the model; () means (n_features,)

    def __post_init__(self) -> None:
        # The arrays stay flat [rows, features]; consumers reshape to [rows, *input_shape].
        self.input_shape = tuple(self.input_shape) or (self.n_features,)
        if math.prod(self.input_shape) != self.n_features:
            raise ValueError(f"input shape {self.input_shape} does not hold {self.n_features} features")

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


def load_dataset(
    spec: str,
    seed: int = 0,
    test_fraction: float = 0.2,
    label_column: str = "label",
    site_column: str | None = None,
    nodes: int | None = None,
    classes: list[str] | None = None,
) -> Dataset:
    """Load `breast_cancer`, `digits`, `synthetic[:k=v,...]` or `csv:PATH`.

    For a CSV, `classes` fixes the label order (every hospital must map labels alike);
    without it the labels found are sorted.
    """
    name, _, arg = spec.partition(":")
    if name in BUNDLED and not arg:
        x, y, features = _bundled(name)
        ds = _split(name, x, y, None, features, seed, test_fraction)
        return replace(ds, input_shape=IMAGE_SHAPES.get(name, ds.input_shape))
    if name == "synthetic":
        x, y, site = synthetic(**_synthetic_args(arg, nodes), seed=seed)
        features = [f"x{i}" for i in range(x.shape[1])]
        return _split("synthetic", x, y, site, features, seed, test_fraction)
    if name == "csv" and arg:
        x, y, site, features = read_csv(Path(arg), label_column, site_column, classes)
        return _split(f"csv:{arg}", x, y, site, features, seed, test_fraction,
                      len(classes) if classes else None)
    raise UserError(
        f"unknown dataset {spec!r}; choose one of {', '.join(BUNDLED)}, synthetic[:k=v,...] or csv:PATH"
    )


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn import datasets as skd  # bundled files: no download

    bunch = skd.load_breast_cancer() if name == "breast_cancer" else skd.load_digits()
    names = [str(f) for f in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64), names


def _synthetic_args(arg: str, nodes: int | None) -> dict[str, float]:
    out: dict[str, float] = dict(SYNTHETIC_DEFAULTS)
    if nodes is not None:
        out["sites"] = nodes
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key not in SYNTHETIC_DEFAULTS:
            raise UserError(
                f"synthetic dataset option {part!r} is not one of "
                f"{', '.join(k + '=...' for k in SYNTHETIC_DEFAULTS)}"
            )
        try:
            out[key] = float(value)
        except ValueError:
            raise UserError(f"synthetic dataset option {key} must be a number, got {value!r}") from None
    return out


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
        raise UserError("synthetic dataset needs sites, samples, features >= 1, classes >= 2, shift >= 0")
    rng = np.random.default_rng([seed, 0x5EED])
    centers = rng.normal(0.0, 0.6, size=(n_cls, 2, dim))
    offsets = rng.normal(0.0, shift, size=(n_sites, dim))
    n = n_sites * per_site
    site = np.repeat(np.arange(n_sites), per_site)
    y = rng.integers(0, n_cls, size=n)
    cluster = rng.integers(0, 2, size=n)
    x = centers[y, cluster] + offsets[site] + rng.standard_normal((n, dim))
    return x, y.astype(np.int64), site.astype(np.int64)


def read_csv(
    path: Path, label_column: str = "label", site_column: str | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Read a hospital's table: one label column, numeric feature columns, optional site column.

    Labels may be any strings or numbers (mapped to 0..C-1 in sorted order). Every error names
    the file, the row and the column.
    """
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError(f"{path}: the file is empty") from None
        header = [h.strip() for h in header]
        if label_column not in header:
            raise UserError(f"{path}: no label column {label_column!r} (columns: {', '.join(header)})")
        if site_column is not None and site_column not in header:
            raise UserError(f"{path}: no site column {site_column!r} (columns: {', '.join(header)})")
        li = header.index(label_column)
        si = header.index(site_column) if site_column is not None else -1
        fcols = [i for i in range(len(header)) if i not in (li, si)]
        if not fcols:
            raise UserError(f"{path}: no feature columns besides the label and site columns")
        rows, labels, sites = [], [], []
        for lineno, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise UserError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
            vals = []
            for i in fcols:
                try:
                    v = float(row[i])
                except ValueError:
                    where = f"{path}:{lineno}: column {header[i]!r}"
                    raise UserError(f"{where} is not a number: {row[i]!r}") from None
                if not math.isfinite(v):
                    where = f"{path}:{lineno}: column {header[i]!r}"
                    raise UserError(f"{where} is {row[i]!r}, not a finite number")
                vals.append(v)
            rows.append(vals)
            labels.append(row[li].strip())
            if si >= 0:
                sites.append(row[si].strip())
    if not rows:
        raise UserError(f"{path}: no data rows")
    if classes is None:
        classes = sorted(set(labels), key=_label_key)
        if len(classes) < 2:
            raise UserError(f"{path}: column {label_column!r} has a single class; need at least two")
    else:
        classes = [str(c) for c in classes]
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise UserError(f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} in column "
                            f"{label_column!r} are not among the classes {classes}")
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], dtype=np.int64)
    site = None
    if si >= 0:
        site_ids = {s: k for k, s in enumerate(sorted(set(sites), key=_label_key))}
        site = np.array([site_ids[s] for s in sites], dtype=np.int64)
    return np.array(rows, dtype=np.float64), y, site, [header[i] for i in fcols]


def _label_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    site: np.ndarray | None,
    features: list[str],
    seed: int,
    test_fraction: float,
    n_classes: int | None = None,
) -> Dataset:
    n_classes = n_classes or int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes)
    stratify = y if counts.min() >= 2 else None
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    tr, te = np.sort(tr), np.sort(te)
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0)
    std[std < 1e-12] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    return Dataset(
        name=name,
        x_train=xs[tr],
        y_train=y[tr],
        x_test=xs[te],
        y_test=y[te],
        n_classes=n_classes,
        feature_names=features,
        site_train=None if site is None else site[tr],
    )
