"""Statistics and the preprocessor: exactly today's standardisation for numeric tables; pooling
is exact (the statistics of the concatenated rows); a vector from another machine is checked;
missing cells imputed (mean, most frequent category), categories one-hot; a node prepares its
rows with agreed statistics."""

import json

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.local import load_local, load_local_table
from p2pfl.learning.partition import partition
from p2pfl.learning.preprocess import Preprocessor, Statistics, pooled, vector_size
from p2pfl.learning.schema import Column, FeatureSchema
from p2pfl.learning.sources import Request, source_of
from p2pfl.learning.sources._bundled import bundled

AGE, BMI = Column("age", "numeric"), Column("bmi", "numeric")
SEX, WARD = Column("sex", "categorical", ("f", "m")), Column("ward", "categorical", ("a", "b", "c"))
COLUMNS = (AGE, SEX, BMI, WARD)
NAN = np.nan


def _rows(n: int, seed: int, missing: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(50, 10, n), rng.integers(0, 2, n), rng.normal(25, 4, n),
                         rng.integers(0, 3, n)]).astype(np.float64)
    x[rng.random(x.shape) < missing] = NAN
    return x


def test_numeric_statistics_are_todays_mean_and_std_bit_for_bit():
    x = bundled("breast_cancer").x
    cols = tuple(Column(f"c{i}", "numeric") for i in range(x.shape[1]))
    s = Statistics.of(x, cols)
    assert np.array(s.mean).tobytes() == x.mean(axis=0).tobytes()
    assert np.sqrt(np.array(s.var)).tobytes() == x.std(axis=0).tobytes()
    assert s.count == (len(x),) * x.shape[1] and s.rows == len(x)


@pytest.mark.parametrize("spec", ["breast_cancer", "synthetic:sites=4,samples=30,features=5"])
def test_a_numeric_dataset_is_todays_arrays_bit_for_bit(spec):
    """The standardisation datasets._split did before statistics existed, written out."""
    ds = load_dataset(spec, seed=3, nodes=4)
    source, argument = source_of(spec)
    table = source.load(Request(spec, argument, 3, nodes=4))
    x, y = table.x, table.y
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=3, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    std[std < 1e-12] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    assert ds.x_train.tobytes() == xs[tr].tobytes() and ds.x_test.tobytes() == xs[te].tobytes()
    assert ds.feature_names == table.features


def test_pooled_equals_the_statistics_of_the_concatenated_rows():
    parts = [_rows(7, 1), _rows(40, 2), _rows(13, 3, missing=0.5)]
    parts[0][:, 2] = NAN  # one part without a single value of bmi
    whole = Statistics.of(np.concatenate(parts), COLUMNS)
    got = pooled([Statistics.of(p, COLUMNS) for p in parts])
    assert got.rows == whole.rows == 60 and got.count == whole.count and got.counts == whole.counts
    assert np.allclose(got.mean, whole.mean, rtol=0, atol=1e-12)
    assert np.allclose(got.var, whole.var, rtol=0, atol=1e-12)
    assert got.columns == COLUMNS
    assert pooled([Statistics.of(parts[1], COLUMNS)]) == Statistics.of(parts[1], COLUMNS)


def test_pooling_refuses_nothing_or_other_columns():
    with pytest.raises(LearningSettingError, match="nothing to pool"):
        pooled([])
    with pytest.raises(LearningSettingError, match="different columns"):
        pooled([Statistics.of(_rows(5, 1), COLUMNS), Statistics.of(_rows(5, 1)[:, :2], (AGE, SEX))])


def test_vector_layout_and_round_trip():
    s = Statistics.of(_rows(30, 4), COLUMNS)
    v = s.to_vector()
    assert v.dtype == np.float64 and len(v) == vector_size(COLUMNS) == 1 + 3 + 2 + 3 + 3
    assert v[0] == 30 and v[1:4].tolist() == [s.count[0], s.mean[0], s.var[0]]
    assert v[4:6].tolist() == list(s.counts[0])
    assert Statistics.from_vector(v, COLUMNS) == s


def _bad(index: int, value: float) -> np.ndarray:
    v = Statistics.of(_rows(30, 4), COLUMNS).to_vector()
    v[index] = value
    return v


@pytest.mark.parametrize("vec,match", [
    (np.zeros(5), r"statistics: 5 values, the columns need 12"),
    (_bad(2, NAN), r"a value is not finite"),
    (_bad(3, np.inf), r"a value is not finite"),
    (_bad(0, 29.5), r"the row count 29.5 is not a non-negative integer"),
    (_bad(1, -1.0), r"column 'age': the count -1.0 is not a non-negative integer"),
    (_bad(1, 2.5), r"column 'age': the count 2.5 is not a non-negative integer"),
    (_bad(1, 31.0), r"column 'age': count 31 exceeds the 30 rows"),
    (_bad(3, -1e-3), r"column 'age': negative variance"),
    (_bad(4, -2.0), r"column 'sex': a category count -2.0 is not a non-negative integer"),
    (_bad(4, 30.0), r"column 'sex': category counts sum to \d+, more than the 30 rows"),
])
def test_a_vector_from_another_machine_is_checked(vec, match):
    with pytest.raises(LearningSettingError, match=match):
        Statistics.from_vector(vec, COLUMNS)


def test_dict_round_trip_through_json_and_its_checks():
    s = Statistics.of(_rows(30, 5), COLUMNS)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["columns"]["sex"] == {"counts": dict(zip(("f", "m"), s.counts[0], strict=True))}
    assert Statistics.from_dict(d, COLUMNS) == s
    del d["columns"]["bmi"]
    with pytest.raises(LearningSettingError, match=r"not the statistics of these columns"):
        Statistics.from_dict(d, COLUMNS)


def test_preprocessor_imputes_standardises_and_one_hot_encodes():
    train = np.array([[40, 1, 20, 2], [60, 1, 30, 0], [NAN, 0, 25, 2], [50, NAN, NAN, NAN]], dtype=np.float64)
    pre = Preprocessor(COLUMNS, Statistics.of(train, COLUMNS))
    assert pre.feature_names == ["age", "sex=f", "sex=m", "bmi", "ward=a", "ward=b", "ward=c"]
    assert pre.n_features == 7
    out = pre.transform(np.array([[NAN, NAN, 25, NAN], [60, 0, NAN, 1]]))
    std_age = np.sqrt(200 / 3)
    assert out.dtype == np.float32
    assert np.allclose(out[0], [0, 0, 1, 0, 0, 0, 1])  # mean 50; sex m (2 of 3); ward c (2 of 3)
    assert np.allclose(out[1], [10 / std_age, 1, 0, 0, 0, 1, 0])
    card = pre.to_dict()
    assert card["impute"] == {"age": 50.0, "bmi": 25.0, "sex": "m", "ward": "c"}
    assert card["means"]["bmi"] == 25.0 and np.isclose(card["stds"]["age"], std_age)
    assert card["columns"][1] == {"name": "sex", "type": "categorical", "categories": ["f", "m"]}
    json.dumps(card)


def test_preprocessor_ties_constant_columns_and_other_columns():
    train = np.array([[5, 0], [5, 1]], dtype=np.float64)
    cols = (AGE, SEX)
    pre = Preprocessor(cols, Statistics.of(train, cols))
    assert pre.transform(np.array([[NAN, NAN]])).tolist() == [[0.0, 1.0, 0.0]]  # tie: the first category
    assert pre.std.tolist() == [1.0]  # a constant column is only centred
    with pytest.raises(LearningSettingError, match="other columns than the table's"):
        Preprocessor(COLUMNS, Statistics.of(train, cols))


def _hospital(tmp_path, name, rows):
    path = tmp_path / f"{name}.csv"
    path.write_text("age,sex,label\n" + "".join(f"{a},{s},{y}\n" for a, s, y in rows))
    return f"csv:{path}"


def test_a_node_prepares_its_rows_with_agreed_statistics(tmp_path):
    plan = FeatureSchema(columns=(AGE, SEX), missing="impute", infer_categories=False)
    a = _hospital(tmp_path, "a", [(20 + i, "fm"[i % 2], i % 2) for i in range(20)])
    b = _hospital(tmp_path, "b", [("" if i == 3 else 60 + 2 * i, "m", i % 2) for i in range(30)])
    ta, tb = (load_local_table(s, i, 2, classes=["0", "1"], schema=plan) for i, s in enumerate((a, b)))
    agreed = pooled([ta.statistics, tb.statistics])
    da, db = ta.prepare(agreed), tb.prepare(agreed)
    assert da.statistics == db.statistics == agreed and da.n_features == db.n_features == 3
    mean, std = agreed.mean[0], np.sqrt(agreed.var[0])
    raw_age = ta.table.x[ta.train, 0]
    assert np.allclose(da.x_train[:, 0].numpy(), (raw_age - mean) / std, atol=1e-6)
    assert db.preprocessor.transform(tb.table.x)[3, 0] == 0.0  # b's missing age: the agreed mean
    own = load_local(a, 0, 2, classes=["0", "1"], schema=plan)
    assert own.statistics == ta.statistics and not torch.equal(own.x_train, da.x_train)
    assert own.preprocessor.feature_names == ["age", "sex=f", "sex=m"]


def test_a_shared_source_keeps_todays_partition_and_feature_shift():
    spec = "synthetic:sites=4,samples=40,features=3"
    shard = load_local(spec, 2, 4, partition_spec="shift:1.0", seed=1)
    ds = load_dataset(spec, seed=1, nodes=4)
    part = partition("shift:1.0", ds.y_train, 4, seed=1, site=ds.site_train, n_features=3)
    expected = ds.x_train[part.indices[2]] + part.feature_shift[2]
    assert shard.x_train.numpy().tobytes() == expected.astype(np.float32).tobytes()
    assert shard.statistics == ds.statistics and shard.plan_sizes.tolist() == part.sizes.tolist()
    table = load_local_table(spec, 0, 4, partition_spec="shift:1.0", seed=1)
    assert table.statistics == ds.statistics  # the whole shared training set, alike at every member


def test_a_vector_whose_values_would_overflow_the_pooled_statistics_is_refused():
    from p2pfl.learning.preprocess import MAX_MAGNITUDE, Statistics
    from p2pfl.learning.schema import Column

    columns = (Column("age", "numeric"),)
    assert Statistics.from_vector(np.array([10.0, 10.0, 50.0, 4.0]), columns).mean == (50.0,)
    for bad in ([10.0, 10.0, 2 * MAX_MAGNITUDE, 4.0], [10.0, 10.0, 50.0, 1e300], [2.0**60, 1.0, 0.0, 0.0]):
        with pytest.raises(LearningSettingError, match="beyond"):
            Statistics.from_vector(np.array(bad), columns)


def test_statistics_and_transform_read_in_blocks_are_bit_for_bit_the_whole_array_ones(monkeypatch):
    import p2pfl.learning.preprocess as preprocess

    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 7.0, (5003, 6)) ** 3  # spread values: rounding differs between sum orders
    columns = tuple(Column(f"c{j}", "numeric") for j in range(6))
    rows = np.sort(rng.choice(len(x), 4001, replace=False))
    monkeypatch.setattr(preprocess, "BLOCK_ROWS", 97)
    stats = Statistics.of(x, columns, rows=rows)
    whole = x[rows]
    assert stats.mean == tuple(float(m) for m in whole.mean(axis=0))
    assert stats.var == tuple(float(v) for v in whole.var(axis=0))
    assert Statistics.of(x[rows], columns) == stats
    fortran = np.asfortranarray(x)  # numpy sums its columns pairwise: so does `of`
    assert Statistics.of(fortran, columns).mean == tuple(float(m) for m in fortran.mean(axis=0))
    pre = Preprocessor(columns, stats)
    assert np.array_equal(pre.transform(x, rows=rows), ((whole - pre.mean) / pre.std).astype(np.float32))
    mixed = x.copy()
    mixed[::7, 1] = NAN
    assert Statistics.of(mixed, columns, rows=rows) == Statistics.of(mixed[rows], columns)
