"""The committed results: every table in simulations/ is what the committed CSV files produce."""

import shutil
from pathlib import Path

import pytest

from p2pfl.experiments.runner import load_experiment, plan_runs
from p2pfl.experiments.store import read_rows
from p2pfl.experiments.tables import markdown_table, summarize, write_tables

SIMULATIONS = Path(__file__).resolve().parents[1] / "simulations"
EXPERIMENTS = {
    "topologies": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "spectral": ["predicted_vs_measured.png"],
    "epidemic": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "hospitals": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "byzantine": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "compression": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "churn": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "privacy": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
    "async": ["accuracy.png", "consensus.png", "accuracy_vs_mb.png"],
}


def readme_table(name: str) -> str:
    """The table between `<!-- begin table NAME -->` and `<!-- end table NAME -->` in the README."""
    text = (SIMULATIONS / "README.md").read_text()
    begin, end = f"<!-- begin table {name} -->\n", f"<!-- end table {name} -->"
    assert begin in text and end in text, f"README.md has no table markers for {name}"
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"  # blank lines around it


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_committed_tables_are_what_the_committed_csv_produce(name, tmp_path):
    exp = load_experiment(SIMULATIONS / f"{name}.toml")
    plan = plan_runs(exp)
    folder = SIMULATIONS / "results" / name
    assert {r.key for r in plan} <= {r["key"] for r in read_rows(folder / "results.csv")}, "sweep incomplete"
    table = markdown_table(exp, summarize(exp, plan, folder))
    assert readme_table(name) == table
    for csv_name in ("results.csv", "history.csv"):
        if (folder / csv_name).exists():
            shutil.copy(folder / csv_name, tmp_path / csv_name)
    write_tables(exp, plan, tmp_path, f"p2pfl experiment simulations/{name}.toml")
    for out in ("summary.md", "summary.csv"):
        assert (tmp_path / out).read_text() == (folder / out).read_text(), out
    for png in EXPERIMENTS[name]:
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
