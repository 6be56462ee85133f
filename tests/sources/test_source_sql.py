"""The sql source: the rows of a query or a table of an SQLite or PostgreSQL database give the
dataset of the same rows as a CSV or Parquet file; the password comes only from the environment
variable password_env names and never shows in a message; every error is one line."""

from pathlib import Path

import numpy as np
import pytest

from p2pfl.errors import UserError
from p2pfl.experiments.spec import run_key
from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column, FeatureSchema
from p2pfl.learning.sources import Request, resolve_spec, shared_part, source_of, source_options
from p2pfl.net.shared_settings import shared_sections
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.protocol.roster import Member, Roster
from p2pfl.settings.node import NodeSettings
from p2pfl.settings.sim import SimConfig

KW = {"label_column": "outcome", "site_column": "hospital", "classes": ["no", "yes"], "seed": 5}
ORDERED = "SELECT a, b, outcome, hospital FROM patients ORDER BY id"


def _one_line(info, *absent: str) -> str:
    text = str(info.value)
    assert "\n" not in text
    for secret in absent:
        assert secret not in text
    return text


def test_csv_parquet_sqlite_and_postgresql_give_the_same_dataset(tmp_path, patients, postgres, monkeypatch):
    csv = load_dataset(patients.csv(tmp_path / "h.csv"), **KW)
    parquet = load_dataset(patients.parquet(tmp_path / "h.parquet"), **KW)
    sqlite = load_dataset(patients.sqlite(tmp_path / "h.db"), **KW, options={"sql_table": "patients"})
    pg = load_dataset(patients.postgres(postgres), **KW, options={"sql_query": ORDERED})
    monkeypatch.setenv("NURSE_PW", postgres.nurse_password)
    postgres.execute("GRANT SELECT ON patients TO nurse")
    nurse = load_dataset(f"sql:{postgres.url('nurse')}", **KW,
                         options={"sql_query": ORDERED, "password_env": "NURSE_PW"})
    for other in (parquet, sqlite, pg, nurse):
        patients.assert_same_dataset(csv, other)
    assert pg.name == f"sql:{postgres.url()}" and pg.feature_names == ["a", "b"]


def test_rows_come_in_the_querys_order(tmp_path, patients):
    spec = patients.sqlite(tmp_path / "h.db")
    source, url = source_of(spec)
    def table(query):
        return source.load(Request(spec, url, label_column="outcome", options={"sql_query": query}))
    up = table("SELECT a, b, outcome FROM patients ORDER BY a")
    down = table("SELECT a, b, outcome FROM patients ORDER BY a DESC")
    assert np.array_equal(up.x, down.x[::-1]) and np.array_equal(up.y, down.y[::-1])
    assert up.x[0, 0] == min(r[0] for r in patients.rows)


@pytest.mark.parametrize("rows,options,match", [
    (None, {"sql_query": "SELECT a, b FROM patients"}, r"h.db: no label column 'label' \(columns: a, b\)"),
    ([(1.0, 1, "no", "H"), (2.0, 2, None, "H")], {"sql_table": "patients"},
     r"h.db, row 2: column 'outcome' is empty"),
    (None, {"sql_query": "SELECT a, b, outcome FROM patients WHERE a > 1000"}, r"h.db: no data rows"),
    (None, {"sql_query": "SELECT a, nope FROM patients"}, r"h.db: no such column: nope$"),
    (None, {}, r"h.db: set sql_query \(a SELECT\) or sql_table, exactly one of them"),
    (None, {"sql_query": "SELECT 1", "sql_table": "patients"}, r"exactly one of them"),
    (None, {"sql_query": "DELETE FROM patients"}, r"h.db: sql_query must be a SELECT query, got 'DELETE'"),
])
def test_sqlite_errors_are_one_line(tmp_path, patients, rows, options, match):
    spec = patients.sqlite(tmp_path / "h.db", rows)
    label = "label" if "no label column" in match else "outcome"
    with pytest.raises(LearningSettingError, match=match) as info:
        load_dataset(spec, label_column=label, site_column="hospital" if rows else None, options=options)
    _one_line(info)


def test_text_in_a_numeric_column_of_the_plan_is_one_line(tmp_path, patients):
    spec = patients.sqlite(tmp_path / "h.db", [(1.0, 1, "no", "H"), ("high", 2, "yes", "H")])
    plan = FeatureSchema(columns=(Column("a", "numeric"), Column("b", "numeric")))
    with pytest.raises(LearningSettingError,
                       match=r"^sql:sqlite:///.*h.db, row 2: column 'a' is not a number: 'high'$") as info:
        load_dataset(spec, label_column="outcome", site_column="hospital", options={"sql_table": "patients"},
                     schema=plan)
    _one_line(info)


def test_postgresql_errors_are_the_databases_first_line_and_never_the_password(postgres, patients,
                                                                              monkeypatch):
    patients.postgres(postgres, table="ward")
    postgres.execute("REVOKE ALL ON ward FROM nurse")
    secret = postgres.nurse_password
    monkeypatch.setenv("NURSE_PW", secret)
    nurse = {"password_env": "NURSE_PW"}
    with pytest.raises(LearningSettingError, match=r'relation "nowhere" does not exist$') as info:
        load_dataset(f"sql:{postgres.url()}", options={"sql_query": "SELECT * FROM nowhere"})
    _one_line(info)
    with pytest.raises(LearningSettingError, match=r"permission denied for table ward$") as info:
        load_dataset(f"sql:{postgres.url('nurse')}", label_column="outcome",
                     options={"sql_table": "ward", **nurse})
    assert _one_line(info, secret).startswith(f"sql:{postgres.url('nurse')}: ")
    monkeypatch.setenv("NURSE_PW", "wrong-" + secret)
    refused = r'password authentication failed for user "nurse"'
    with pytest.raises(LearningSettingError, match=refused) as info:
        load_dataset(f"sql:{postgres.url('nurse')}", options={"sql_table": "ward", **nurse})
    _one_line(info, secret)
    with pytest.raises(LearningSettingError, match=r"read-only transaction$"):  # a SELECT only reads
        load_dataset(f"sql:{postgres.url()}",
                     options={"sql_query": "WITH gone AS (DELETE FROM ward RETURNING *) SELECT * FROM gone"})
    with pytest.raises(LearningSettingError, match=r"password authentication failed|no password supplied"):
        load_dataset(f"sql:{postgres.url('nurse')}", options={"sql_table": "ward"})  # scram: one is needed


def test_a_url_with_a_password_is_refused_without_showing_it(monkeypatch):
    url = "postgresql+psycopg://nurse:hunter2-secret@127.0.0.1:1/hospital"
    with pytest.raises(LearningSettingError, match=r"the URL holds a password; .* with password_env") as info:
        load_dataset(f"sql:{url}", options={"sql_table": "patients"})
    assert "nurse:***@127.0.0.1" in _one_line(info, "hunter2-secret")
    with pytest.raises(LearningSettingError, match=r"not a database URL") as info:
        load_dataset("sql:not a url hunter2-secret", options={"sql_table": "patients"})
    _one_line(info, "hunter2-secret")


def test_password_env_naming_an_unset_variable(monkeypatch):
    monkeypatch.delenv("P2PFL_NO_SUCH_VAR", raising=False)
    with pytest.raises(LearningSettingError, match=r"password_env names the environment variable "
                                                   r"'P2PFL_NO_SUCH_VAR', which is not set") as info:
        load_dataset("sql:postgresql+psycopg://nurse@127.0.0.1:1/hospital",
                     options={"sql_table": "patients", "password_env": "P2PFL_NO_SUCH_VAR"})
    _one_line(info)


def test_a_relative_sqlite_file_is_taken_against_the_base_folder(tmp_path, patients):
    assert resolve_spec("sql:sqlite:///data/h.db", Path("/exp")) == "sql:sqlite:////exp/data/h.db"
    assert resolve_spec("sql:sqlite:////abs/h.db", Path("/exp")) == "sql:sqlite:////abs/h.db"
    pg = "sql:postgresql+psycopg://tester@127.0.0.1:5432/hospital"
    assert resolve_spec(pg, Path("/exp")) == pg
    patients.sqlite(tmp_path / "h.db")
    spec = resolve_spec("sql:sqlite:///h.db", tmp_path)
    ds = load_dataset(spec, label_column="outcome", site_column="hospital", options={"sql_table": "patients"})
    assert len(ds.y_test) == 12
    with pytest.raises(LearningSettingError, match=r"no such file .*nowhere.db"):  # not a new empty file
        load_dataset(resolve_spec("sql:sqlite:///nowhere.db", tmp_path), options={"sql_table": "t"})
    assert not (tmp_path / "nowhere.db").exists()


def test_the_settings_carry_the_options_to_the_loader_and_a_query_must_be_a_select(write_config):
    from p2pfl.settings.load import node_settings

    data = NodeSettings().data
    data.sql_query, data.password_env = "SELECT * FROM t", "PW"
    options = source_options("sql:sqlite:///x.db", data)
    assert options == {"sql_query": "SELECT * FROM t", "password_env": "PW"}
    assert source_options("csv:x.csv", data) == {}  # only the named source's options
    path = write_config(('sql_query = ""', 'sql_query = "DROP TABLE t"'))
    with pytest.raises(UserError, match=r"data.sql_query is not valid: must be a SELECT query, got 'DROP'"):
        node_settings(path)


def test_the_simulator_reads_an_sql_source_and_its_options_keep_old_run_keys(tmp_path, patients):
    from p2pfl.sim.runner import prepare

    spec = patients.sqlite(tmp_path / "h.db")
    cfg = SimConfig(dataset=spec, sql_table="patients", label_column="outcome", site_column="hospital",
                    nodes=3, topology="ring", partition="site")
    ds, data, _ = prepare(cfg)
    assert ds.feature_names == ["a", "b"] and len(ds.y_train) == 48
    assert run_key("train", "decentralized", SimConfig()) == run_key("train", "decentralized",
                                                                    SimConfig(password_env=""))
    assert run_key("train", "decentralized", SimConfig(sql_query="SELECT 1")) != run_key(
        "train", "decentralized", SimConfig())


def test_nothing_of_a_hospitals_database_is_shared():
    roster = Roster([Member("a", peer_id_of(generate_key()), ("/ip4/127.0.0.1/tcp/1",))])
    mine, theirs = NodeSettings(), NodeSettings()
    mine.data.source, mine.data.sql_table = "sql:sqlite:///st-marys.db", "patients"
    theirs.data.source = "sql:postgresql+psycopg://etl@db.general:5432/ehr"
    theirs.data.sql_query, theirs.data.password_env = "SELECT * FROM cohort", "EHR_PW"
    assert shared_sections(mine, roster) == shared_sections(theirs, roster)
    assert shared_sections(mine, roster)["source"] == "sql" == shared_part(theirs.data.source)
