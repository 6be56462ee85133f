"""When training ends: every site's signed report reaches every site, each writes the same
cross-site table and picks the same best round; a member that is not there is named missing."""

from __future__ import annotations

import json

import torch
from test_plan_consortium import own_tables, patients

from p2pfl.cli import main


def test_every_site_reports_to_every_site_and_all_pick_the_same_best_round(consortium, capsys):
    c = consortium(nodes=3, rounds=4, topology="ring", round_timeout=10.0)
    own_tables(c, patients())
    c.configure("training", 'select = "auroc"')
    c.start()
    assert c.wait() == {name: 0 for name in c.names}
    reports = {n: json.loads((c.folder / n / "state" / "consortium_report.json").read_text())
               for n in c.names}
    for name, report in reports.items():
        assert [s["name"] for s in report["sites"]] == c.names  # every site's row at every site
        assert all(s["status"] == "reported" and s["rows"] > 0 for s in report["sites"])
        own = next(s for s in report["sites"] if s["name"] == name)
        rows = c.metrics(name)
        assert own["history"]["auroc"] == [r["val_auroc"] for r in rows]  # what it trained with
        assert 0.5 < own["metrics"]["auroc"] <= 1 and "sensitivity" in own["metrics"]
        assert all(0 <= r["val_balanced_accuracy"] <= 1 for r in rows)
        # about 16 validation rows per site: said once, at start
        assert c.log(name).count("event=validation_split") == 1 and "fewer than 30" in c.log(name)
    # the same figures and the same best round everywhere: no coordinator, no member alone
    assert reports["hospital-1"]["sites"] == reports["hospital-2"]["sites"] == reports["hospital-3"]["sites"]
    selection = reports["hospital-1"]["selection"]
    assert selection == reports["hospital-2"]["selection"] == reports["hospital-3"]["selection"]
    assert selection["metric"] == "auroc" and selection["members"] == 3
    for name in c.names:
        best = torch.load(c.folder / name / "state" / "best.pt", weights_only=True)
        assert best["round"] == selection["round"] + 1  # rounds done, as in checkpoint.pt
        assert not (c.folder / name / "state" / "rounds").exists()
        assert f"event=best_round round={selection['round']} metric=auroc" in c.log(name)
    assert main(["report", "--config", str(c.configs["hospital-2"])]) == 0
    out = capsys.readouterr().out
    assert "hospital-1" in out and "hospital-3" in out and "AUROC" in out
    page = (c.folder / "hospital-2" / "state" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "hospital-3" in page


def test_a_member_missing_at_the_end_is_named_not_waited_for(consortium):
    c = consortium(nodes=3, rounds=2, topology="ring", round_timeout=1.5)
    c.configure("gossip", "min_peers = 1")
    c.start("hospital-1", "hospital-2")
    assert c.wait() == {"hospital-1": 0, "hospital-2": 0}
    report = json.loads((c.folder / "hospital-1" / "state" / "consortium_report.json").read_text())
    status = {s["name"]: s["status"] for s in report["sites"]}
    assert status == {"hospital-1": "reported", "hospital-2": "reported", "hospital-3": "missing"}
    assert "event=site_reports_missing missing=hospital-3" in c.log("hospital-1")
    assert report["selection"] is None  # no training.select: the last round is the model
