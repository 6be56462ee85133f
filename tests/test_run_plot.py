"""`p2pfl plot STATE_DIR...`: a real run's convergence plot from its nodes' metrics.jsonl."""

import json

from p2pfl.cli import main
from p2pfl.run_plot import site_name


def _state(folder, accuracies):
    state = folder / "state"
    state.mkdir(parents=True)
    rows = [{"round": r, "val_accuracy": a, "val_auroc": None if r == 0 else a + 0.05}
            for r, a in enumerate(accuracies)]
    (state / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return state


def test_plot_draws_each_node_and_refuses_a_folder_without_metrics(tmp_path, capsys):
    a, b = _state(tmp_path / "st-marys", [0.5, 0.7, 0.8]), _state(tmp_path / "general", [0.6, 0.7])
    out = tmp_path / "plots" / "run.png"
    assert main(["plot", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and site_name(a) == "st-marys"
    assert main(["plot", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
