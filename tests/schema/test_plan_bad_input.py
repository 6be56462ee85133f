"""Bad tables and plans, each one line naming the file, column and row, and exit code 2: from
`p2pfl simulate --plan` and from a node reading its own table."""

from __future__ import annotations

import sqlite3

import pytest

from p2pfl.cli import main

PLAN = '''[task]
label_column = "outcome"
classes = ["no", "yes"]

[features]
columns = [
  { name = "age" },
  { name = "sex", type = "categorical", categories = ["female", "male"] },
]
ignore = ["patient_id"]
'''
GOOD = "patient_id,age,sex,outcome\n" + "".join(
    f"{i},{40 + i % 25},{'female' if i % 2 else 'male'},{'yes' if i % 3 else 'no'}\n" for i in range(30))


def _simulate(tmp_path, table: str, plan: str = PLAN, *extra: str) -> list[str]:
    (tmp_path / "h.csv").write_text(table)
    (tmp_path / "plan.toml").write_text(plan)
    return ["simulate", "--dataset", f"csv:{tmp_path / 'h.csv'}", "--plan", str(tmp_path / "plan.toml"),
            "--nodes", "2", "--topology", "ring", "--rounds", "1", "--eval-every", "1", *extra]


@pytest.mark.parametrize("edit,table,message", [
    (("{ name = \"age\" },", "{ name = \"age\" },\n  { name = \"glucose\" },"), GOOD,
     "h.csv: no column 'glucose' of the plan"),
    (None, GOOD.replace("1,41,female", "1,41,other", 1), "h.csv:3: column 'sex'"),
    (None, GOOD.replace("3,43,", "3,forty,", 1), "h.csv:5: column 'age' is not a number: 'forty'"),
    (None, GOOD.replace("4,44,male,yes", "4,44,male,", 1), "h.csv:6: column 'outcome' is empty"),
    (None, "patient_id,age,sex,outcome\n", "h.csv: no data rows"),
    (None, GOOD.replace("patient_id,age,sex,outcome", "patient_id,age,sex,outcome,ward").replace(
        "\n", ",3\n").replace("outcome,ward,3", "outcome,ward"), "column 'ward' is not in the plan"),
    (None, GOOD.replace("5,45,female", "5,,female", 1), "h.csv:7: column 'age' is empty"),
])
def test_a_bad_table_or_plan_is_one_line_and_exit_2(tmp_path, capsys, edit, table, message):
    plan = PLAN.replace(*edit) if edit else PLAN
    assert main(_simulate(tmp_path, table, plan)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("p2pfl: error: ") and len(err.splitlines()) == 1, err
    assert message in err and str(tmp_path) in err, err


def test_the_same_table_with_the_missing_policy_imputes_or_drops(tmp_path, capsys):
    table = GOOD.replace("5,45,female", "5,,female", 1).replace("7,47,female", "7,47,", 1)
    for policy in ("impute", "drop_row"):
        args = _simulate(tmp_path, table, PLAN + f'missing = "{policy}"\n', "--json")
        assert main(args) == 0, capsys.readouterr().err
        capsys.readouterr()


def test_a_failing_sql_query_is_the_databases_message(tmp_path, capsys):
    db = tmp_path / "ehr.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE visits (age REAL, outcome TEXT)")
    conn.close()
    args = ["simulate", "--dataset", f"sql:sqlite:///{db}", "--sql-query", "SELECT age, outcome FROM nowhere",
            "--label-column", "outcome", "--nodes", "2", "--topology", "ring", "--rounds", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such table: nowhere" in err and str(db) in err


def test_a_categorical_table_trains_in_the_simulator_from_flags_or_the_plan(tmp_path, capsys):
    import json

    table = GOOD.replace("5,45,female", "5,,female", 1)
    (tmp_path / "h.csv").write_text(table)
    flags = ["simulate", "--dataset", f"csv:{tmp_path / 'h.csv'}", "--label-column", "outcome",
             "--ignore", "patient_id", "--missing", "impute", "--nodes", "3", "--topology", "ring",
             "--rounds", "2", "--eval-every", "1", "--json"]
    assert main(flags) == 0
    by_flags = json.loads(capsys.readouterr().out)
    assert main(_simulate(tmp_path, table, PLAN + 'missing = "impute"\n', "--nodes", "3", "--rounds", "2",
                          "--json")) == 0
    by_plan = json.loads(capsys.readouterr().out)
    # the same schema either way: sex is categorical (text), patient_id left out
    assert by_flags["final"] == by_plan["final"]
    final = by_plan["final"]  # the averaged model's clinical figures next to its accuracy
    assert 0 <= final["averaged_model_balanced_accuracy"] <= 1 and 0 <= final["averaged_model_auroc"] <= 1


def test_plan_draft_writes_a_plan_every_member_can_load(tmp_path, capsys, write_config):
    from p2pfl.settings.load import node_settings

    (tmp_path / "h.csv").write_text(GOOD.replace("5,45,female", "5,,female", 1))
    out = tmp_path / "plan.toml"
    draft = ["plan", "draft", "--data", str(tmp_path / "h.csv"), "--label", "outcome", "--out", str(out)]
    assert main(draft) == 0
    assert "patient_id: every value distinct, likely an identifier" in capsys.readouterr().err
    text = out.read_text()
    assert text.startswith("# drafted from ")
    node = tmp_path / "node.toml"
    write_config()  # the templates; then the drafted plan in place of the template's
    out.write_text(text)
    node.write_text(node.read_text().replace('source = "digits"', f'source = "csv:{tmp_path / "h.csv"}"'))
    settings = node_settings(node)
    assert settings.task.classes == ["no", "yes"] and settings.features.ignore == ["patient_id"]
    assert settings.features.columns == [
        {"name": "age"}, {"name": "sex", "type": "categorical", "categories": ["female", "male"]}]
    assert settings.features.missing == "impute"  # a cell of age is empty
    assert main(draft) == 2  # an existing plan is not overwritten
