"""The csv source: a hospital's own table, read with errors naming file, row and column; never
partitioned; only its name is shared between members; a relative path is taken against a folder."""

from pathlib import Path

import numpy as np
import pytest

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.local import load_local
from p2pfl.learning.schema import Column, FeatureSchema
from p2pfl.learning.sources import resolve_spec, shared_part, source_of
from p2pfl.net.shared_settings import shared_sections
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.protocol.roster import Member, Roster
from p2pfl.settings.node import NodeSettings


def _csv(tmp_path, text):
    path = tmp_path / "h.csv"
    path.write_text(text)
    return f"csv:{path}"


def test_csv_with_site_column(tmp_path):
    rows = "".join(f"{i % 3},{i * 0.5},{'yes' if i % 2 else 'no'},H{i % 4}\n" for i in range(40))
    ds = load_dataset(_csv(tmp_path, "a,b,outcome,hospital\n" + rows), label_column="outcome",
                      site_column="hospital")
    assert ds.feature_names == ["a", "b"] and ds.n_classes == 2
    assert set(ds.site_train.tolist()) == {0, 1, 2, 3}
    assert ds.input_shape == (2,)


@pytest.mark.parametrize("text,match", [
    ("a,b\n1,2\n3,4\n", "no label column 'label'"),
    ("a,label\n1,0\nnan,1\n", r"h.csv:3: column 'a' is empty \(features.missing = drop_row or impute"),
    ("a,label\n1,0\ninf,1\n", r"h.csv:3: column 'a' is 'inf', not a finite number"),
    ("a,label\n1,0\n2\n", "1 fields, the header has 2"),
    ("a,label\n", "no data rows"),
    ("a,label\n1,0\n2,0\n", "single class"),
])
def test_csv_errors_name_file_row_column(tmp_path, text, match):
    with pytest.raises(LearningSettingError, match=match):
        load_dataset(_csv(tmp_path, text))


def test_text_in_a_numeric_column_names_row_and_column(tmp_path):
    spec = _csv(tmp_path, "a,label\n1,0\nhigh,1\n")
    with pytest.raises(LearningSettingError, match=r"h.csv:3: column 'a' is not a number: 'high'$"):
        load_dataset(spec, schema=FeatureSchema(columns=(Column("a", "numeric"),)))
    with pytest.raises(LearningSettingError, match=r"h.csv: text column\(s\) 'a' \('high' at .*h.csv:3\): "
                                                   r"list them with their categories in features.columns"):
        load_dataset(spec, schema=FeatureSchema(infer_categories=False))
    assert load_dataset(spec).feature_names == ["a=1", "a=high"]  # inferred: a text column


def test_csv_with_fixed_classes_keeps_label_order_and_class_count(tmp_path):
    rows = "".join(f"{i},{'no' if i % 2 else 'maybe'}\n" for i in range(20))
    ds = load_dataset(_csv(tmp_path, "a,label\n" + rows), classes=["yes", "no", "maybe"])
    assert ds.n_classes == 3 and set(ds.y_train.tolist()) == {1, 2}
    with pytest.raises(LearningSettingError, match="'maybe' in column 'label' are not among the classes"):
        load_dataset(_csv(tmp_path, "a,label\n" + rows), classes=["yes", "no"])


def test_csv_path_is_the_rest_of_the_spec_and_is_required(tmp_path):
    folder = tmp_path / "a:b"
    folder.mkdir()
    spec = _csv(folder, "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(10)))
    source, path = source_of(spec)
    assert source.name == "csv" and not source.shared and path == str(folder / "h.csv")
    assert len(load_dataset(spec).y_train) == 8
    with pytest.raises(LearningSettingError, match=r"needs an argument: csv:PATH"):
        source_of("csv")


def test_csv_is_never_partitioned_every_member_keeps_all_its_rows(tmp_path):
    spec = _csv(tmp_path, "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    shards = [load_local(spec, i, 5, classes=["0", "1"], partition_spec="dirichlet:0.1") for i in range(5)]
    for shard in shards:
        assert len(shard.y_train) == 40 and len(shard.y_val) == 10  # 80/20 of its own 50 rows
        assert shard.plan_sizes.tolist() == [40] and shard.plan_row == 0
        assert np.array_equal(shard.x_train.numpy(), shards[0].x_train.numpy())


def test_only_the_name_of_a_csv_source_is_shared(tmp_path):
    roster = Roster([Member("a", peer_id_of(generate_key()), ("/ip4/127.0.0.1/tcp/1",))])
    mine, theirs = NodeSettings(), NodeSettings()
    mine.data.source, theirs.data.source = "csv:/data/st-marys.csv", "csv:elsewhere/general.csv"
    assert shared_sections(mine, roster) == shared_sections(theirs, roster)
    assert shared_sections(mine, roster)["source"] == "csv"
    assert shared_part("synthetic:sites=4") == "synthetic:sites=4" and shared_part("digits") == "digits"


def test_relative_csv_path_is_taken_against_the_base_folder(tmp_path):
    assert resolve_spec("csv:data/h.csv", Path("/exp")) == "csv:/exp/data/h.csv"
    assert resolve_spec("csv:/abs/h.csv", Path("/exp")) == "csv:/abs/h.csv"
    assert resolve_spec("synthetic:sites=4", Path("/exp")) == "synthetic:sites=4"
    assert source_of("csv:x")[0].resolve("x", tmp_path) == (tmp_path / "x").as_posix()
