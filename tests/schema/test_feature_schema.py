"""The plan's feature schema applied to a table: the plan's columns in its order, categories as
the plan lists them, ignored and renamed columns, the missing-value policy; every error is one
line naming the file, the row and the column; csv, parquet and sqlite give the same Table."""

import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column, FeatureSchema, parse_columns
from p2pfl.learning.sources import Request, source_of

AGE, SEX = Column("age", "numeric"), Column("sex", "categorical", ("f", "m"))
PLAN = FeatureSchema(columns=(AGE, SEX))


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "h.csv"
    path.write_text(text)
    return f"csv:{path}"


def _table(spec: str, schema: FeatureSchema | None = None, **kw):
    source, argument = source_of(spec)
    return source.load(Request(spec, argument, schema=schema, **kw))


# --- parse_columns and FeatureSchema -------------------------------------------------------

def test_parse_columns_reads_the_plans_list_type_defaults_to_numeric():
    raw = [{"name": "age"}, {"name": "sex", "type": "categorical", "categories": ["f", "m"]},
           {"name": "bmi", "type": "numeric"}]
    assert parse_columns(raw) == (AGE, SEX, Column("bmi", "numeric"))


@pytest.mark.parametrize("raw,match", [
    ({"name": "age"}, r"^features.columns must be a list of tables"),
    (["age"], r"^features.columns\[0\] must be a table"),
    ([{"name": "age"}, {"name": ""}], r"^features.columns\[1\]: name must be a non-empty string$"),
    ([{"name": 3}], r"^features.columns\[0\]: name must be a non-empty string$"),
    ([{"name": "age"}, {"name": "age"}], r"^features.columns\[1\]: column 'age' is listed twice$"),
    ([{"name": "age", "type": "text"}], r"^features.columns\[0\] \('age'\): type must be numeric or"),
    ([{"name": "age", "categories": ["a"]}], r"^features.columns\[0\] \('age'\): a numeric column has no"),
    ([{"name": "sex", "type": "categorical"}], r"^features.columns\[0\] \('sex'\): a categorical column"),
    ([{"name": "sex", "type": "categorical", "categories": []}], r"needs categories, a non-empty list"),
    ([{"name": "sex", "type": "categorical", "categories": ["f", 1]}], r"needs categories, a non-empty list"),
    ([{"name": "sex", "type": "categorical", "categories": ["f", "m", "f"]}],
     r"^features.columns\[0\] \('sex'\): category 'f' is listed twice$"),
    ([{"name": "age", "unit": "years"}], r"^features.columns\[0\]: unknown key\(s\) 'unit'"),
])
def test_parse_columns_refuses_naming_the_entry(raw, match):
    with pytest.raises(LearningSettingError, match=match):
        parse_columns(raw)


def test_feature_schema_checks_its_policy_ignore_and_renames():
    with pytest.raises(LearningSettingError, match=r"features.missing must be one of error, drop_row, imp"):
        FeatureSchema(missing="guess")
    with pytest.raises(LearningSettingError, match=r"features.ignore: 'age' is also in features.columns"):
        FeatureSchema(columns=(AGE,), ignore=("age",))
    with pytest.raises(LearningSettingError, match=r"features.rename: 'a' and 'b' both become 'age'"):
        FeatureSchema(rename={"a": "age", "b": "age"})


# --- the plan's columns --------------------------------------------------------------------

def test_the_plans_columns_in_the_plans_order_categories_as_indices(tmp_path):
    t = _table(_csv(tmp_path, "sex,label,age\nm,0,40\nf,1,50.5\nm,1,61\n"), PLAN)
    assert t.features == ["age", "sex"] and t.columns == (AGE, SEX)
    assert t.x.dtype == np.float64 and t.x.tolist() == [[40.0, 1.0], [50.5, 0.0], [61.0, 1.0]]
    assert t.dropped == 0


def test_one_hot_order_follows_the_plans_categories_not_the_tables(tmp_path):
    rows = "".join(f"{['a', 'z', 'q'][i % 3]},{i},{i % 2}\n" for i in range(30))
    spec = _csv(tmp_path, "ward,age,label\n" + rows)
    ward = Column("ward", "categorical", ("z", "q", "a"))  # neither sorted nor the order the rows show
    ds = load_dataset(spec, schema=FeatureSchema(columns=(ward, AGE)))
    assert ds.feature_names == ["ward=z", "ward=q", "ward=a", "age"] and ds.input_shape == (4,)
    table = _table(spec, FeatureSchema(columns=(ward, AGE)))
    onehot = ds.preprocessor.transform(table.x)[:, :3]
    wards = [["a", "z", "q"][i % 3] for i in range(30)]
    assert onehot.tolist() == [[float(w == c) for c in ("z", "q", "a")] for w in wards]
    inferred = load_dataset(spec)  # no plan: categories sorted
    assert inferred.feature_names == ["ward=a", "ward=q", "ward=z", "age"]


@pytest.mark.parametrize("text,schema,match", [
    ("age,label\n40,0\n", PLAN, r"h.csv: no column 'sex' of the plan \(columns: age, label\)$"),
    ("age,sex,patient_id,label\n40,f,P1,0\n", PLAN,
     r"h.csv: column 'patient_id' is not in the plan: list it in features.columns or features.ignore$"),
    ("age,sex,id,mrn,label\n40,f,1,2,0\n", PLAN, r"h.csv: columns 'id', 'mrn' are not in the plan: list"),
    ("age,sex,label\n40,f,0\n41,x,1\n", PLAN,
     r"h.csv:3: column 'sex' has 'x', not one of the plan's categories 'f', 'm'$"),
    ("age,sex,label\n40,f,0\n,m,1\n", PLAN,
     r"h.csv:3: column 'age' is empty \(features.missing = drop_row or impute accepts missing values\)$"),
    ("age,sex,label\n40,f,0\n41,m,1\nfour,m,0\n", PLAN, r"h.csv:4: column 'age' is not a number: 'four'$"),
    ("age,sex,label\n40,f,0\n41, ,1\n", FeatureSchema(columns=(AGE, SEX), missing="impute"), None),
    ("age,sex,label\n40,f,0\n41,m,\n", FeatureSchema(columns=(AGE, SEX), missing="impute"),
     r"h.csv:3: column 'label' is empty$"),
    ("age,sex,label\n,f,0\n41,,1\n", FeatureSchema(columns=(AGE, SEX), missing="drop_row"),
     r"h.csv: no data rows left after dropping 2 with missing values$"),
    ("age,label\n40,0\n", FeatureSchema(rename={"years": "age"}),
     r"h.csv: features.rename names column 'years', which the table lacks \(columns: age, label\)$"),
    ("age,years,label\n40,41,0\n", FeatureSchema(rename={"years": "age"}),
     r"h.csv: two columns are called 'age'$"),
    ("age,label\n40,0\n", FeatureSchema(columns=(AGE, Column("label", "numeric"))),
     r"h.csv: column 'label' is the label or site column"),
    ("age,sex,ward,label\n40,f,A,0\n41,m,B,1\n", FeatureSchema(infer_categories=False),
     r"h.csv: text column\(s\) 'sex' \('f' at .*h.csv:2\), 'ward' \('A' at .*h.csv:2\): list them with their "
     r"categories in features.columns \(p2pfl plan draft proposes them\)$"),
])
def test_errors_are_one_line_naming_file_row_and_column(tmp_path, text, schema, match):
    spec = _csv(tmp_path, text)
    if match is None:  # the control: this one loads
        assert np.isnan(_table(spec, schema).x[1, 1])
        return
    with pytest.raises(LearningSettingError, match=match) as info:
        _table(spec, schema)
    assert "\n" not in str(info.value)


def test_an_ignored_column_the_table_lacks_is_fine(tmp_path):
    spec = _csv(tmp_path, "age,sex,label\n40,f,0\n41,m,1\n")
    t = _table(spec, FeatureSchema(columns=(AGE, SEX), ignore=("patient_id",)))
    assert t.features == ["age", "sex"]


def test_ignore_and_rename(tmp_path):
    spec = _csv(tmp_path, "patient_id,years,gender,label\nP1,40,f,0\nP2,50,m,1\n")
    plan = FeatureSchema(columns=(AGE, SEX), ignore=("patient_id",), rename={"years": "age", "gender": "sex"})
    t = _table(spec, plan)
    assert t.features == ["age", "sex"] and t.x.tolist() == [[40.0, 0.0], [50.0, 1.0]]
    inferred = _table(spec, FeatureSchema(ignore=("patient_id",)))
    assert inferred.features == ["years", "gender"] and inferred.columns[1].categories == ("f", "m")


def test_drop_row_drops_rows_with_a_missing_cell_and_counts_them(tmp_path):
    text = "age,sex,label,hospital\n40,f,0,A\n,m,1,B\n50,,1,C\nnan,f,0,D\n60,m,1,E\n"
    t = _table(_csv(tmp_path, text), FeatureSchema(columns=(AGE, SEX), missing="drop_row"),
               site_column="hospital")
    assert t.dropped == 3 and t.x.tolist() == [[40.0, 0.0], [60.0, 1.0]] and t.y.tolist() == [0, 1]
    assert t.site.tolist() == [0, 1]  # sites of the rows kept: A, E


def test_impute_keeps_missing_cells_as_nan(tmp_path):
    text = "age,sex,label\n40,f,0\n,m,1\n50,,1\n"
    t = _table(_csv(tmp_path, text), FeatureSchema(columns=(AGE, SEX), missing="impute"))
    assert t.dropped == 0 and np.isnan(t.x[1, 0]) and np.isnan(t.x[2, 1])
    assert t.x[0].tolist() == [40.0, 0.0] and t.x[1, 1] == 1.0


def test_inferred_columns_numeric_or_text_sorted_like_labels(tmp_path):
    text = "a,ward,code,label\n1.5,B,10,0\n2,A,9,1\n,B,2,0\n"
    t = _table(_csv(tmp_path, text), FeatureSchema(missing="impute"))
    assert t.columns == (Column("a", "numeric"), Column("ward", "categorical", ("A", "B")),
                         Column("code", "numeric"))
    mixed = _table(_csv(tmp_path, "c,label\n10,0\n9,1\nx,0\n"))
    assert mixed.columns[0].categories == ("9", "10", "x")  # numbers by value, then text


def test_a_fixed_schema_is_refused_for_a_source_with_fixed_columns():
    with pytest.raises(LearningSettingError, match=r"data source 'synthetic' has fixed columns"):
        load_dataset("synthetic:sites=2,samples=10", schema=PLAN)
    ds = load_dataset("synthetic:sites=2,samples=10,features=3", schema=FeatureSchema(missing="impute"))
    assert ds.feature_names == ["x0", "x1", "x2"] and ds.statistics.count == (16, 16, 16)


# --- the same Table from csv, parquet and sqlite ------------------------------------------------

HEADER = ("age", "sex", "ward", "outcome", "hospital")
ROWS = [(None if i % 7 == 3 else 20.0 + i * 0.75, None if i % 5 == 1 else "fm"[i % 2],
         ["icu", "er", "gen"][i % 3], "yes" if i % 3 else "no", f"H{i % 2}") for i in range(30)]


def _all_three(tmp_path: Path) -> list[tuple[str, dict]]:
    def field(v):
        return "" if v is None else repr(v) if isinstance(v, float) else str(v)
    (tmp_path / "h.csv").write_text("\n".join([",".join(HEADER)] + [",".join(map(field, r)) for r in ROWS]))
    pq.write_table(pa.table({h: [r[i] for r in ROWS] for i, h in enumerate(HEADER)}), tmp_path / "h.parquet")
    with sqlite3.connect(tmp_path / "h.db") as conn:
        conn.execute("CREATE TABLE patients (age REAL, sex TEXT, ward TEXT, outcome TEXT, hospital TEXT)")
        conn.executemany("INSERT INTO patients VALUES (?, ?, ?, ?, ?)", ROWS)
    conn.close()
    return [(f"csv:{tmp_path / 'h.csv'}", {}), (f"parquet:{tmp_path / 'h.parquet'}", {}),
            (f"sql:sqlite:///{tmp_path / 'h.db'}", {"sql_table": "patients"})]


@pytest.mark.parametrize("missing", ["impute", "drop_row"])
def test_csv_parquet_and_sqlite_give_the_same_table(tmp_path, missing):
    ward = Column("ward", "categorical", ("gen", "icu", "er"))
    plan = FeatureSchema(columns=(ward, AGE, SEX), missing=missing)
    tables = [_table(spec, plan, label_column="outcome", site_column="hospital", classes=["no", "yes"],
                     options=options) for spec, options in _all_three(tmp_path)]
    first = tables[0]
    assert first.dropped == (0 if missing == "impute" else 10)
    assert np.isnan(first.x).any() == (missing == "impute")
    for other in tables[1:]:
        assert other.x.tobytes() == first.x.tobytes()  # NaN for NaN, bit for bit
        assert other.y.tobytes() == first.y.tobytes() and other.site.tobytes() == first.site.tobytes()
        assert (other.features, other.columns, other.dropped, other.n_classes) == \
               (first.features, first.columns, first.dropped, first.n_classes)
