"""The data source registry: names, errors, and `shared` as what decides partitioning."""

import dataclasses

import numpy as np
import pytest

from p2pfl.errors import UserError
from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.local import load_local
from p2pfl.learning.sources import SOURCES, source_of, usages


def test_registry_lists_every_source_with_its_usage():
    assert SOURCES.names() == ("breast_cancer", "csv", "digits", "parquet", "sql", "synthetic")
    assert usages() == "breast_cancer, csv:PATH, digits, parquet:PATH, sql:URL, synthetic[:k=v,...]"
    assert [p.key for p in source_of("synthetic")[0].params] == ["sites", "samples", "features",
                                                                  "classes", "shift"]


def test_unknown_dataset():
    with pytest.raises(LearningSettingError, match="unknown data source 'mnist'; choose one of "
                                        "breast_cancer, csv, digits, parquet, sql, synthetic"):
        load_dataset("mnist")


def test_load_local_consults_shared_not_the_name(monkeypatch):
    members = SOURCES._load()
    shards = [load_local("breast_cancer", i, 4, seed=0) for i in range(4)]
    assert sum(len(s.y_train) for s in shards) == len(load_dataset("breast_cancer").y_train)
    assert [s.plan_row for s in shards] == [0, 1, 2, 3]
    monkeypatch.setitem(members, "breast_cancer", dataclasses.replace(members["breast_cancer"], shared=False))
    own = [load_local("breast_cancer", i, 4, seed=0) for i in range(2)]
    full = load_dataset("breast_cancer")
    for shard in own:  # a source that is not shared: every member keeps all of its training rows
        assert np.array_equal(shard.x_train.numpy(), full.x_train) and shard.plan_sizes.tolist() == [455]


def test_node_config_names_an_unknown_source_and_needs_classes_for_an_own_table(tmp_path, write_config):
    from p2pfl.settings.load import node_settings

    path = write_config(('source = "digits"', 'source = "mnist"'))
    with pytest.raises(UserError, match=f"{path}: data.source is not valid: unknown data source 'mnist'"):
        node_settings(path)
    path = write_config(('source = "digits"', 'source = "csv:patients.csv"'))
    with pytest.raises(UserError, match=f"{tmp_path / 'plan.toml'}: task.classes must list the label "
                       "values .* for a csv source"):
        node_settings(path)
    path = write_config()
    assert node_settings(path).data.source == "digits"  # a shared source needs no classes
