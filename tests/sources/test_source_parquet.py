"""The parquet source: a hospital's own Parquet file gives the same dataset as the same rows in
a CSV; typed labels are named like CSV text; every error is one line naming file, row, column."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.local import load_local
from p2pfl.learning.schema import Column, FeatureSchema
from p2pfl.learning.sources import resolve_spec, shared_part, source_of


def test_a_parquet_file_gives_the_dataset_of_the_same_rows_as_csv(tmp_path, patients):
    kw = {"label_column": "outcome", "site_column": "hospital", "classes": ["no", "yes"], "seed": 3}
    csv = load_dataset(patients.csv(tmp_path / "h.csv"), **kw)
    parquet = load_dataset(patients.parquet(tmp_path / "h.parquet"), **kw)
    patients.assert_same_dataset(csv, parquet)
    assert parquet.feature_names == ["a", "b"] and set(parquet.site_train.tolist()) == {0, 1, 2}
    assert parquet.name == f"parquet:{tmp_path / 'h.parquet'}"


def _write(path: Path, **columns) -> str:
    pq.write_table(pa.table(columns), path)
    return f"parquet:{path}"


def test_number_labels_are_named_by_their_shortest_text(tmp_path):
    x = [float(i) for i in range(20)]
    ints = load_dataset(_write(tmp_path / "i.parquet", a=x, label=[i % 2 for i in range(20)]),
                        classes=["1", "0"])
    floats = load_dataset(_write(tmp_path / "f.parquet", a=x, label=[float(i % 2) for i in range(20)]),
                          classes=["1", "0"])
    assert np.array_equal(ints.y_train, floats.y_train) and ints.y_train[0] == 1  # row 0 is label 0 -> '0'


@pytest.mark.parametrize("columns,match", [
    ({"a": [1.0, 2.0], "b": [0, 1]}, r"h.parquet: no label column 'label' \(columns: a, b\)"),
    ({"a": [1.0, float("inf")], "label": [0, 1]},
     r"h.parquet, row 2: column 'a' is inf, not a finite number"),
    ({"a": [1.0, None], "label": [0, 1]}, r"h.parquet, row 2: column 'a' is empty"),
    ({"a": [1.0, 2.0, 3.0], "label": ["no", "yes", None]}, r"h.parquet, row 3: column 'label' is empty"),
    ({"a": pa.array([], pa.float64()), "label": pa.array([], pa.int64())}, r"h.parquet: no data rows"),
])
def test_parquet_errors_are_one_line_naming_file_row_column(tmp_path, columns, match):
    with pytest.raises(LearningSettingError, match=match) as info:
        load_dataset(_write(tmp_path / "h.parquet", **columns))
    assert "\n" not in str(info.value)


def test_text_in_a_numeric_column_of_the_plan(tmp_path):
    spec = _write(tmp_path / "h.parquet", a=["1", "high", "3"], label=[0, 1, 0])
    with pytest.raises(LearningSettingError, match=r"h.parquet, row 2: column 'a' is not a number: 'high'$"):
        load_dataset(spec, schema=FeatureSchema(columns=(Column("a", "numeric"),)))


def test_a_file_that_is_not_parquet_or_not_there(tmp_path):
    (tmp_path / "h.parquet").write_text("a,label\n1,0\n")
    with pytest.raises(LearningSettingError, match=r"h.parquet: not a readable Parquet file: ") as info:
        load_dataset(f"parquet:{tmp_path / 'h.parquet'}")
    assert "\n" not in str(info.value)
    with pytest.raises(LearningSettingError, match=r"nowhere.parquet: no such file"):
        load_dataset(f"parquet:{tmp_path / 'nowhere.parquet'}")
    with pytest.raises(LearningSettingError, match=r"needs an argument: parquet:PATH"):
        source_of("parquet")


def test_parquet_is_a_hospitals_own_table_never_partitioned_path_beside_the_settings(tmp_path, patients):
    rows = patients.rows
    spec = _write(tmp_path / "h.parquet", a=[r[0] for r in rows], outcome=[r[2] for r in rows])
    shards = [load_local(spec, i, 3, "outcome", ["no", "yes"], partition_spec="dirichlet:0.1")
              for i in range(3)]
    assert all(s.plan_sizes.tolist() == [48] and len(s.y_val) == 12 for s in shards)
    assert shared_part(spec) == "parquet" and not source_of(spec)[0].shared
    assert resolve_spec("parquet:data/h.parquet", Path("/exp")) == "parquet:/exp/data/h.parquet"
