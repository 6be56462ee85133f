"""`draft_schema`: a proposal from a hospital's raw rows: text columns categorical with the
categories found, identifiers ignored (every value distinct, text or integer-valued; not
floats), the classes, the missing cells, one note line per proposal; the draft loads."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.draft import draft_schema
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column, FeatureSchema
from p2pfl.learning.sources import Request, source_of


def _raw(spec: str):
    source, argument = source_of(spec)
    return source.read(Request(spec, argument))


def _csv(tmp_path: Path) -> str:
    def row(i: int) -> str:
        age = "" if i % 6 == 0 else 20 + (i % 9) * 1.5
        ward, outcome = ["icu", "er"][i % 3 == 0], "no" if i % 4 else "yes"
        return f"P{i:03d},{i},{age},{'mf'[i % 2]},{ward},{0.1 * i + 0.05},{outcome},\n"
    path = tmp_path / "h.csv"
    path.write_text("patient_id,record,age,sex,ward,dose,outcome,empty\n" + "".join(map(row, range(24))))
    return f"csv:{path}"


def test_draft_flags_identifiers_and_proposes_categories(tmp_path):
    spec = _csv(tmp_path)
    draft = draft_schema(_raw(spec), "outcome")
    assert draft.ignore == ("patient_id", "record", "empty")
    assert draft.columns == (Column("age", "numeric"), Column("sex", "categorical", ("f", "m")),
                             Column("ward", "categorical", ("er", "icu")), Column("dose", "numeric"))
    assert draft.classes == ["no", "yes"]
    assert draft.missing["age"] == 4 and draft.missing["sex"] == 0 and draft.missing["empty"] == 24
    assert "patient_id: every value distinct, likely an identifier: ignored" in draft.notes
    assert "record: every value distinct, likely an identifier: ignored" in draft.notes
    assert "empty: every value is missing: ignored" in draft.notes
    assert any(n.startswith("age: 4 of 24 values missing") for n in draft.notes)
    assert not any(n.startswith("dose") for n in draft.notes)  # distinct floats are measurements
    assert all("\n" not in n for n in draft.notes)
    plan = FeatureSchema(columns=draft.columns, ignore=draft.ignore, missing="impute", infer_categories=False)
    ds = load_dataset(spec, label_column="outcome", classes=draft.classes, schema=plan)
    assert ds.feature_names == ["age", "sex=f", "sex=m", "ward=er", "ward=icu", "dose"]


def test_draft_of_typed_rows_integer_ids_and_a_site_column(tmp_path):
    path = tmp_path / "h.parquet"
    pq.write_table(pa.table({"mrn": list(range(100, 110)), "age": [float(40 + i) for i in range(10)],
                             "visits": [i % 3 for i in range(10)], "label": [i % 2 for i in range(10)],
                             "site": ["A", "B"] * 5}), path)
    draft = draft_schema(_raw(f"parquet:{path}"), "label", site_column="site")
    assert draft.ignore == ("mrn",) and draft.classes == ["0", "1"]
    assert draft.columns == (Column("age", "numeric"), Column("visits", "numeric"))


def test_draft_needs_the_label_column(tmp_path):
    with pytest.raises(LearningSettingError, match=r"h.csv: no column 'label' \(columns: patient_id"):
        draft_schema(_raw(_csv(tmp_path)), "label")
