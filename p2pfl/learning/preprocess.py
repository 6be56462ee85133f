"""Standardisation statistics and the preprocessing they fix.

`Statistics` are the aggregates of some training rows (row count; per numeric column the count
of values present, their mean and population variance; per categorical column the count of each
category). Members of a consortium can pool them exactly without sharing rows (`pooled`, the
parallel variance of Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for
computing sample variances", 1979), so every hospital standardises with the same numbers.

`Preprocessor` turns raw rows (a source's `Table.x`: numbers, category indices, NaN for a
missing cell) into the model's input: a numeric column imputed with its mean and standardised,
a categorical column imputed with its most frequent category and one-hot encoded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column

MIN_STD = 1e-12  # a column whose spread is below this is only centred (divided by 1)
MAX_MAGNITUDE = 1e15  # a received mean or standard deviation beyond this is refused (no overflow)
MAX_ROWS = 2**53  # a row count beyond this is not a count a float64 holds exactly
BLOCK_ROWS = 8192  # rows read at a time: temporaries stay in cache, none as large as a table


@dataclass(frozen=True)
class Statistics:
    """Aggregates of some rows of a table with these columns (numeric columns' fields follow the
    numeric columns in column order, `counts` the categorical ones)."""

    rows: int
    count: tuple[int, ...]  # per numeric column: values present
    mean: tuple[float, ...]  # per numeric column: mean of the values present
    var: tuple[float, ...]  # per numeric column: population variance (ddof 0) of them
    counts: tuple[tuple[int, ...], ...]  # per categorical column: rows of each category
    columns: tuple[Column, ...]

    @staticmethod
    def of(x_raw: np.ndarray, columns: Sequence[Column], rows: np.ndarray | None = None) -> Statistics:
        """The statistics of these rows (float64 [rows, columns], NaN for a missing cell);
        `rows`: only these rows of x_raw (read in blocks, never copied whole)."""
        x = np.asarray(x_raw, dtype=np.float64)
        columns = tuple(columns)
        if x.ndim != 2 or x.shape[1] != len(columns):
            raise LearningSettingError(f"statistics: {x.shape} values for {len(columns)} columns")
        count_rows = len(x) if rows is None else len(rows)
        if count_rows:  # the same reductions as a plain standardisation of the whole array
            has_nan, mean_all, var_all = _moments(x, rows)
        numeric: list[tuple[int, float, float]] = []  # (count, mean, var) of each numeric column
        counts = []
        for j, col in enumerate(columns):
            present = None  # None: every value present
            if col.kind == "categorical" or (count_rows and has_nan[j]):
                column = x[:, j] if rows is None else x[rows, j]
                present = column[~np.isnan(column)]
            if col.kind == "categorical":
                codes = present.astype(np.int64)
                if len(codes) and (codes.min() < 0 or codes.max() >= len(col.categories)):
                    raise LearningSettingError(f"statistics: column {col.name!r} holds an unknown category")
                counts.append(tuple(int(c) for c in np.bincount(codes, minlength=len(col.categories))))
            elif not count_rows or (present is not None and not len(present)):
                numeric.append((0, 0.0, 0.0))
            elif present is None:
                numeric.append((count_rows, float(mean_all[j]), float(var_all[j])))
            else:
                numeric.append((len(present), float(present.mean()), float(present.var())))
        count, mean, var = (tuple(t) for t in zip(*numeric, strict=True)) if numeric else ((), (), ())
        return Statistics(count_rows, count, mean, var, tuple(counts), columns)

    def to_vector(self) -> np.ndarray:
        """float64: rows, then per column in order: count, mean, var (numeric) or each category's count."""
        out = [float(self.rows)]
        numeric, categorical = iter(range(len(self.count))), iter(self.counts)
        for col in self.columns:
            if col.kind == "numeric":
                k = next(numeric)
                out += [float(self.count[k]), self.mean[k], self.var[k]]
            else:
                out += [float(c) for c in next(categorical)]
        return np.array(out, dtype=np.float64)

    @staticmethod
    def from_vector(vec: np.ndarray, columns: Sequence[Column]) -> Statistics:
        """The statistics a vector (from another machine) holds, checked against the columns."""
        columns = tuple(columns)
        v = np.asarray(vec, dtype=np.float64).ravel()
        need = vector_size(columns)
        if len(v) != need:
            raise LearningSettingError(f"statistics: {len(v)} values, the columns need {need}")
        if not np.isfinite(v).all():
            raise LearningSettingError("statistics: a value is not finite")
        rows = _whole(v[0], "the row count")
        if rows > MAX_ROWS:
            raise LearningSettingError(f"statistics: {rows} rows is beyond {MAX_ROWS}")
        count, mean, var, counts = [], [], [], []
        at = 1
        for col in columns:
            if col.kind == "numeric":
                n, m, s2 = (float(t) for t in v[at:at + 3])
                at += 3
                count.append(_whole(n, f"column {col.name!r}: the count"))
                if count[-1] > rows:
                    raise LearningSettingError(f"statistics: column {col.name!r}: count {count[-1]} "
                                               f"exceeds the {rows} rows")
                if s2 < 0:
                    raise LearningSettingError(f"statistics: column {col.name!r}: negative variance {s2!r}")
                if abs(m) > MAX_MAGNITUDE or s2 > MAX_MAGNITUDE ** 2:
                    raise LearningSettingError(f"statistics: column {col.name!r}: mean {m!r} or variance "
                                               f"{s2!r} beyond {MAX_MAGNITUDE:g} in magnitude")
                mean.append(m)
                var.append(s2)
            else:
                k = len(col.categories)
                cats = tuple(_whole(c, f"column {col.name!r}: a category count") for c in v[at:at + k])
                at += k
                if sum(cats) > rows:
                    raise LearningSettingError(f"statistics: column {col.name!r}: category counts sum to "
                                               f"{sum(cats)}, more than the {rows} rows")
                counts.append(cats)
        return Statistics(rows, tuple(count), tuple(mean), tuple(var), tuple(counts), columns)

    def to_dict(self) -> dict[str, object]:
        """JSON-able: {"rows": n, "columns": {name: {count, mean, var} | {counts: {category: n}}}}."""
        numeric, categorical = iter(range(len(self.count))), iter(self.counts)
        out: dict[str, object] = {}
        for col in self.columns:
            if col.kind == "numeric":
                k = next(numeric)
                out[col.name] = {"count": self.count[k], "mean": self.mean[k], "var": self.var[k]}
            else:
                out[col.name] = {"counts": dict(zip(col.categories, next(categorical), strict=True))}
        return {"rows": self.rows, "columns": out}

    @staticmethod
    def from_dict(d: Mapping[str, object], columns: Sequence[Column]) -> Statistics:
        """The statistics `to_dict` wrote, checked like a vector (`from_vector`)."""
        try:
            entries = d["columns"]
            values: list[object] = [d["rows"]]
            for col in columns:
                entry = entries[col.name]  # type: ignore[index]
                if col.kind == "numeric":
                    values += [entry["count"], entry["mean"], entry["var"]]
                else:
                    values += [entry["counts"][c] for c in col.categories]
            vec = np.array(values, dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise LearningSettingError(f"statistics: not the statistics of these columns ({exc})") from None
        return Statistics.from_vector(vec, columns)


def vector_size(columns: Sequence[Column]) -> int:
    """Length of `Statistics.to_vector()` for these columns."""
    return 1 + sum(3 if c.kind == "numeric" else len(c.categories) for c in columns)


def pooled(stats: Sequence[Statistics]) -> Statistics:
    """The statistics of all the rows the parts describe, combined exactly in the given order
    (Chan, Golub & LeVeque 1979: counts add, means weight by count, M2 gains delta^2 n_a n_b / n)."""
    if not stats:
        raise LearningSettingError("statistics: nothing to pool")
    first = stats[0]
    if any(s.columns != first.columns for s in stats):
        raise LearningSettingError("statistics: the parts describe different columns")
    count, mean, var = list(first.count), list(first.mean), list(first.var)
    counts = [list(c) for c in first.counts]
    for part in stats[1:]:
        for k, (nb, mb, vb) in enumerate(zip(part.count, part.mean, part.var, strict=True)):
            na = count[k]
            if nb == 0:
                continue
            if na == 0:
                count[k], mean[k], var[k] = nb, mb, vb
                continue
            n = na + nb
            delta = mb - mean[k]
            m2 = var[k] * na + vb * nb + delta * delta * na * nb / n
            count[k], mean[k], var[k] = n, mean[k] + delta * nb / n, m2 / n
        for c, more in zip(counts, part.counts, strict=True):
            c[:] = [a + b for a, b in zip(c, more, strict=True)]
    return Statistics(sum(s.rows for s in stats), tuple(count), tuple(mean), tuple(var),
                      tuple(tuple(c) for c in counts), first.columns)


class Preprocessor:
    """Raw rows to model inputs, fixed by statistics: numeric columns imputed with the mean and
    standardised ((x - mean) / std, std below MIN_STD taken as 1); categorical columns imputed
    with the most frequent category (ties: the first) and one-hot encoded in the plan's order."""

    def __init__(self, columns: Sequence[Column], statistics: Statistics):
        self.columns = tuple(columns)
        if statistics.columns != self.columns:
            raise LearningSettingError("statistics: they describe other columns than the table's "
                                       f"({', '.join(c.name for c in statistics.columns)})")
        self.statistics = statistics
        self.mean = np.array(statistics.mean, dtype=np.float64)
        self.std = np.sqrt(np.array(statistics.var, dtype=np.float64))
        self.std[self.std < MIN_STD] = 1.0
        self.mode = tuple(int(np.argmax(c)) if len(c) else 0 for c in statistics.counts)
        self.numeric = [j for j, c in enumerate(self.columns) if c.kind == "numeric"]
        self.categorical = [j for j, c in enumerate(self.columns) if c.kind == "categorical"]
        width = [1 if c.kind == "numeric" else len(c.categories) for c in self.columns]
        self.start = np.concatenate([[0], np.cumsum(width)]).astype(int)  # each column's first output

    @property
    def n_features(self) -> int:
        return int(self.start[-1])

    @property
    def feature_names(self) -> list[str]:
        """"age", "sex=f", "sex=m": one per model input."""
        return [n for c in self.columns
                for n in ([c.name] if c.kind == "numeric" else [f"{c.name}={v}" for v in c.categories])]

    def transform(self, x_raw: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 [rows, n_features] of raw rows float64 [rows, columns] (NaN: missing);
        `rows`: only these rows of x_raw, in this order (read in blocks, never copied whole)."""
        x = np.asarray(x_raw, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.columns):
            raise LearningSettingError(f"preprocess: {x.shape} values for {len(self.columns)} columns")
        count = len(x) if rows is None else len(rows)
        out = np.empty((count, self.n_features), dtype=np.float32)
        for a in range(0, count, BLOCK_ROWS):
            block = x[a:a + BLOCK_ROWS] if rows is None else x[rows[a:a + BLOCK_ROWS]]
            self._transform_block(block, out[a:a + BLOCK_ROWS])
        return out

    def _transform_block(self, x: np.ndarray, out: np.ndarray) -> None:
        if self.numeric:
            every = self.numeric == list(range(len(self.columns)))  # no copy of an all-numeric table
            num = x if every else x[:, self.numeric]
            gaps = np.isnan(num)
            if gaps.any():
                num = np.where(gaps, self.mean, num)
            scaled = (num - self.mean) / self.std
            if every:
                out[:] = scaled  # the same float32 rounding as astype
            else:
                out[:, self.start[self.numeric]] = scaled.astype(np.float32)
        for mode, j in zip(self.mode, self.categorical, strict=True):
            codes = np.where(np.isnan(x[:, j]), mode, x[:, j]).astype(np.int64)
            k = len(self.columns[j].categories)
            out[:, self.start[j]:self.start[j] + k] = codes[:, None] == np.arange(k)

    def to_dict(self) -> dict[str, object]:
        """JSON-able, for the model card: the columns, means, stds and impute values."""
        numeric = [self.columns[j].name for j in self.numeric]
        impute: dict[str, object] = dict(zip(numeric, map(float, self.mean), strict=True))
        for mode, j in zip(self.mode, self.categorical, strict=True):
            impute[self.columns[j].name] = self.columns[j].categories[mode]
        return {
            "columns": [{"name": c.name, "type": c.kind, **({"categories": list(c.categories)}
                                                            if c.kind == "categorical" else {})}
                        for c in self.columns],
            "means": dict(zip(numeric, map(float, self.mean), strict=True)),
            "stds": dict(zip(numeric, map(float, self.std), strict=True)),
            "impute": impute,
            "features": self.feature_names,
        }


def _moments(x: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of x (or of its `rows`): whether a value is NaN, the mean and the population
    variance, read in blocks of BLOCK_ROWS. numpy reduces axis 0 of a C-ordered array one row
    after the other, so carrying the running sum from block to block adds in the same order as
    x.mean(axis=0) and x.var(axis=0) on the whole array: the results are bit for bit theirs."""
    if rows is None and not x.flags.c_contiguous:  # numpy sums such an array pairwise: as it does
        return np.isnan(x).any(axis=0), x.mean(axis=0), x.var(axis=0)
    count = len(x) if rows is None else len(rows)

    def blocks():
        for a in range(0, count, BLOCK_ROWS):
            yield x[a:a + BLOCK_ROWS] if rows is None else x[rows[a:a + BLOCK_ROWS]]

    def running_sum(total: np.ndarray | None, block: np.ndarray) -> np.ndarray:
        return block.sum(axis=0) if total is None else np.add.reduce(np.vstack([total, block]), axis=0)

    total, has_nan = None, np.zeros(x.shape[1], dtype=bool)
    for block in blocks():
        total = running_sum(total, block)
        has_nan |= np.isnan(block).any(axis=0)
    mean = total / count
    squares = None
    for block in blocks():
        deviation = block - mean
        np.multiply(deviation, deviation, out=deviation)
        squares = running_sum(squares, deviation)
    return has_nan, mean, squares / count


def _whole(value: float, what: str) -> int:
    """A count from a vector: a non-negative integer."""
    value = float(value)
    if value < 0 or value != math.floor(value):
        raise LearningSettingError(f"statistics: {what} {value!r} is not a non-negative integer")
    return int(value)
