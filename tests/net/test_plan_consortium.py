"""The consortium plan with real tables: three hospitals, each with its own rows of one
categorical table (an ID column, text categories, empty cells), agree on the preprocessing and
train; members whose plans differ refuse each other at start, naming the key, at both ends."""

from __future__ import annotations

import numpy as np
import torch

from p2pfl.learning.local import load_local_table
from p2pfl.learning.preprocess import Preprocessor, Statistics, pooled
from p2pfl.settings.load import feature_schema, node_settings

COLUMNS = ('columns = [{ name = "age" }, { name = "bmi" }, '
           '{ name = "sex", type = "categorical", categories = ["female", "male"] }, '
           '{ name = "smoker", type = "categorical", categories = ["never", "former", "current"] }]\n'
           'ignore = ["patient_id"]\nmissing = "impute"')


HEADER = ["patient_id", "age", "bmi", "sex", "smoker", "outcome"]


def patients(n: int = 240, seed: int = 7) -> list[list[str]]:
    """Seeded rows: patient_id, age, bmi, sex, smoker, outcome; about 5% of cells empty."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        age, bmi = rng.normal(55, 12), rng.normal(27, 4)
        sex, smoker = rng.choice(["female", "male"]), rng.choice(["never", "former", "current"])
        risk = 0.08 * (age - 55) + 0.3 * (bmi - 27) + 1.5 * (smoker == "current") + 0.5 * (sex == "male")
        outcome = "yes" if risk + rng.logistic() > 0.5 else "no"
        cells = [str(1000 + i), f"{age:.1f}", f"{bmi:.1f}", sex, smoker, outcome]
        for k in (1, 2, 3, 4):
            if rng.random() < 0.05:
                cells[k] = ""
        rows.append(cells)
    return rows


def write_tables(c, header: list[str], rows: list[list[str]]) -> None:
    """Hospital k holds rows k, k + n, k + 2n, ... of the table (its own patients)."""
    n = len(c.names)
    for k, name in enumerate(c.names):
        lines = [",".join(header)] + [",".join(r) for r in rows[k::n]]
        (c.folder / name / "patients.csv").write_text("\n".join(lines) + "\n")


def own_tables(c, rows: list[list[str]]) -> None:
    """Each hospital its own rows of the patients table, and the plan that reads them."""
    write_tables(c, HEADER, rows)
    c.configure("data", 'source = "csv:patients.csv"')
    c.configure("task", 'label_column = "outcome"\nclasses = ["no", "yes"]')
    c.configure("features", COLUMNS)


def test_three_hospitals_agree_on_the_statistics_and_predict_alike(consortium):
    c = consortium(nodes=3, rounds=3, topology="ring", round_timeout=10.0)
    own_tables(c, patients())
    # hospital-2 calls its age column otherwise: data.columns maps it to the plan's name
    table = c.folder / "hospital-2" / "patients.csv"
    table.write_text(table.read_text().replace("patient_id,age,", "patient_id,Age (years),", 1))
    c.configure("data", 'columns = { "Age (years)" = "age" }', "hospital-2")
    c.start()
    assert c.wait() == {name: 0 for name in c.names}
    for name in c.names:
        assert "event=preprocessing_agreed members=3" in c.log(name)
        assert len(c.metrics(name)) == 3

    states = {n: torch.load(c.folder / n / "state" / "checkpoint.pt", weights_only=True) for n in c.names}
    stored = [states[n]["preprocessing"] for n in c.names]
    assert stored[0] == stored[1] == stored[2]  # bit for bit the same at every member

    # ... and equal to the statistics of all hospitals' training rows pooled
    tables = []
    for k, name in enumerate(c.names):
        settings = node_settings(c.configs[name])
        tables.append(load_local_table(f"csv:{c.folder / name / 'patients.csv'}", k, 3, "outcome",
                                       ["no", "yes"], seed=settings.task.seed,
                                       schema=feature_schema(settings)))
    columns = tables[0].table.columns
    truth = pooled([t.statistics for t in tables])
    agreed = Statistics.from_dict(stored[0], columns)
    assert agreed.rows == truth.rows == sum(len(t.train) for t in tables)
    np.testing.assert_allclose(agreed.mean, truth.mean, rtol=1e-6)
    np.testing.assert_allclose(agreed.var, truth.var, rtol=1e-6)
    assert agreed.counts == truth.counts
    own = tables[0].statistics  # a hospital's own statistics are not the consortium's
    assert not np.allclose(own.mean, agreed.mean, rtol=1e-6)

    # the same weights give the same predictions at every hospital, on the same patients
    model_state = states["hospital-1"]["model"]
    raw = tables[0].table.x[tables[0].test]
    outputs = []
    for name in c.names:
        prep = Preprocessor(columns, Statistics.from_dict(states[name]["preprocessing"], columns))
        assert prep.feature_names == ["age", "bmi", "sex=female", "sex=male", "smoker=never",
                                      "smoker=former", "smoker=current"]
        x = torch.from_numpy(prep.transform(raw))
        weights = [v for k, v in model_state.items() if k.endswith("weight")]
        biases = [v for k, v in model_state.items() if k.endswith("bias")]
        h = x
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = h @ w.T + b
            if i < len(weights) - 1:
                h = torch.relu(h)
        outputs.append(h)
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_members_whose_plans_differ_say_which_key_at_both_ends(consortium):
    c = consortium(nodes=4, rounds=2, topology="complete", round_timeout=5.0)
    own_tables(c, patients(120))
    c.configure("gossip", "start_timeout = 6.0")
    c.configure("task", 'classes = ["yes", "no"]', "hospital-2")  # class order
    swapped = COLUMNS.replace('{ name = "age" }, { name = "bmi" }', '{ name = "bmi" }, { name = "age" }')
    c.configure("features", swapped, "hospital-3")  # feature order
    c.configure("training", "lr = 0.2", "hospital-4")  # learning rate
    c.start()
    assert c.wait() == {name: 6 for name in c.names}  # no start quorum: exit 6
    first = c.log("hospital-1")
    for peer, key in (("hospital-2", "task.classes: ['no', 'yes'] here, ['yes', 'no'] at the peer"),
                      ("hospital-3", "features.columns[0]: {'name': 'age'} here, {'name': 'bmi'} at the "
                                     "peer"),
                      ("hospital-4", "training.lr: 0.05 here, 0.2 at the peer")):
        lines = [ln for ln in first.splitlines()
                 if "event=consortium_mismatch" in ln and f"peer={peer}" in ln]
        assert lines and key in lines[0], (peer, lines[:1])
        theirs = [ln for ln in c.log(peer).splitlines()
                  if "event=consortium_mismatch" in ln and "peer=hospital-1" in ln]
        assert theirs and key.split(":")[0] in theirs[0]  # the other end names the same key
    assert "training.lr" not in [ln for ln in first.splitlines() if "peer=hospital-2" in ln][0]
