"""`p2pfl components`: the table of every extension point comes from the registries."""

import json

from p2pfl.cli import main
from p2pfl.components import EXTENSION_POINTS, registry, rows


def test_the_table_lists_every_registered_member(capsys):
    assert main(["components", "--json"]) == 0
    listed = {(r["kind"], r["name"].split(":")[0]) for r in json.loads(capsys.readouterr().out)}
    expected = {(kind, name) for kind in EXTENSION_POINTS for name in registry(kind).names()}
    assert listed == expected
    assert {"trimmed_mean", "geomedian", "topk", "epidemic", "cnn", "csv"} <= {n for _, n in listed}


def test_rows_show_arguments_parameters_and_papers(capsys):
    by_name = {r.name: r for r in rows()}
    assert "file:PATH" in by_name and "csv:PATH" in by_name
    assert by_name["trimmed_mean"].params == "b=1" and "Yin" in by_name["trimmed_mean"].paper
    assert by_name["erdos_renyi"].params == "p=auto"
    assert main(["components", "topology", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| extension point |") and all("| topology |" in line for line in table[2:])
