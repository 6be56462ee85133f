"""Making a bundle: from a node's state folder (`p2pfl export`) or from a simulation's averaged
model (`p2pfl simulate --export`). The card holds aggregates only (statistics, metrics, row
counts), never a patient's row; the rows the ONNX graph is checked on are not stored."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from p2pfl.errors import UserError
from p2pfl.learning.models import build_model, parse_hidden
from p2pfl.learning.params import load_flat
from p2pfl.learning.preprocess import Preprocessor, Statistics
from p2pfl.learning.sources import Request, shared_part, source_of, source_options
from p2pfl.learning.sources._columns import as_text, label_key
from p2pfl.learning.trainer import OptimConfig, make_optimizer
from p2pfl.net import checkpoint
from p2pfl.net.assembly import node_table
from p2pfl.net.membership import Membership
from p2pfl.net.reports import REPORT_FILE
from p2pfl.net.shared_settings import plan_sections
from p2pfl.net.snapshots import BEST
from p2pfl.product import graph
from p2pfl.product.bundle import Bundle, make_card, write_bundle
from p2pfl.settings.load import node_settings, plan_settings, sim_schema
from p2pfl.settings.node import NodeSettings
from p2pfl.settings.sim import SimConfig

ROUNDS = ("last", "best")


def export_node(config: Path, out: Path, round: str = "last") -> Bundle:
    """The bundle of the model in the state folder of the node `config` (node.toml) describes:
    its last checkpoint, or (`round="best"`) best.pt."""
    if round not in ROUNDS:
        raise UserError(f"--round must be last or best, got {round!r}")
    settings = node_settings(config)
    state_dir = settings.path(settings.node.state_dir)
    membership = Membership.load(settings, state_dir, store=False)
    local = node_table(settings, *membership.data_share(settings.node.name))
    data = local.prepare(local.statistics)  # shapes; the checkpoint's statistics come next
    t = settings.training
    model = build_model(settings.model.kind, data.input_shape, data.n_classes,
                        tuple(settings.model.hidden), seed=t.seed)
    state = _checkpoint(state_dir, model, OptimConfig(t.optimizer, t.lr, t.momentum), round)
    if state.get("preprocessing") is not None:
        stats = Statistics.from_dict(state["preprocessing"], local.table.columns)
        data = local.prepare(stats)
    pre = data.preprocessor
    assert pre is not None
    row = state.get("metrics_row") or {}
    card = make_card(
        settings.model.kind, tuple(settings.model.hidden), t.seed, data.input_shape, model, pre,
        settings.task.label_column, _classes(settings.task.classes, data.n_classes),
        tuple(settings.features.ignore), settings.features.missing,
        source="export", plan=plan_sections(settings), data_source=shared_part(settings.data.source),
        consortium=_consortium(membership, int(state["round"])),
        exported_by=settings.node.name, round=int(state["round"]), selected=round,
        sites=_sites(state_dir, settings.node.name, len(data.y_train), len(data.y_val), row),
        privacy=_privacy(settings, row),
    )
    return write_bundle(out, Bundle(card, model, pre), local.table.x[local.test])


def _checkpoint(state_dir: Path, model: torch.nn.Module, opt: OptimConfig, round: str) -> dict:
    """Load the chosen checkpoint into `model`; its round, metrics row and preprocessing."""
    if round == "best":
        return _best(state_dir, model)
    rng = torch.random.get_rng_state()  # load restores the run's RNG: put ours back
    try:
        restored = checkpoint.load(state_dir, model, make_optimizer(model, opt))
    finally:
        torch.random.set_rng_state(rng)
    if restored.path is None:
        raise UserError(f"{state_dir}: no checkpoint yet (the node has not finished a round)")
    return {"round": restored.round, "metrics_row": restored.metrics_row,
            "preprocessing": restored.preprocessing}


def _best(state_dir: Path, model: torch.nn.Module) -> dict:
    """best.pt (a checkpoint file, digest verified) loaded into `model`."""
    path = state_dir / BEST
    if not path.is_file():
        raise UserError(f"{path}: no best-round checkpoint (the plan names no selection metric, or "
                        "no round has ended); use --round last")
    try:
        state = torch.load(path, weights_only=True)
        good = isinstance(state, dict) and state.get("digest") == checkpoint.digest(state)
    except Exception:  # noqa: BLE001 - any unreadable file: one line
        good = False
    if not good:
        raise UserError(f"{path}: not a readable checkpoint or its digest does not match")
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError):
        raise UserError(f"{path}: the checkpoint does not fit this node's model") from None
    return state


def _sites(state_dir: Path, name: str, train_rows: int, val_rows: int, row: dict) -> list[dict]:
    """Per-site validation metrics and rows: the consortium report's, else this node's own."""
    report = state_dir / REPORT_FILE
    if report.is_file():
        try:
            sites = json.loads(report.read_text())["sites"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{report}: not a consortium report (no 'sites' list)") from None
        if isinstance(sites, list):
            return sites
    return [{"name": name, "rows": val_rows, "train_rows": train_rows, "metrics": row}]


def _privacy(settings: NodeSettings, row: dict) -> dict | None:
    p = settings.privacy
    if p.noise <= 0:
        return None
    return {"noise": p.noise, "clip": p.clip, "delta": p.delta, "epsilon": row.get("epsilon")}


def _classes(named: list[str], n_classes: int) -> list[str]:
    """The plan's class names, else 0..C-1 (bundled data)."""
    return [str(c) for c in named] if named else [str(k) for k in range(n_classes)]


def export_sim(cfg: SimConfig, result, out: Path) -> Bundle:
    """The bundle of a simulation's decentralized run: the mean of the nodes' final models, with
    the simulation's preprocessing (`result`: p2pfl.sim.runner.SimResult)."""
    from p2pfl.sim.runner import prepare

    run = result.main
    if run.name != "decentralized" or run.final_params is None:
        raise UserError("--export needs the decentralized run's models")
    ds, nodes, _ = prepare(cfg)  # the same data and preprocessing as the run (seeded)
    pre: Preprocessor = ds.preprocessor  # type: ignore[assignment]
    model = build_model(cfg.model, ds.input_shape, ds.n_classes, parse_hidden(cfg.hidden), cfg.seed)
    load_flat(model, run.final_params.mean(0))
    schema, classes = sim_schema(cfg)
    card = make_card(
        cfg.model, parse_hidden(cfg.hidden), cfg.seed, ds.input_shape, model, pre, cfg.label_column,
        classes or _sim_classes(cfg, ds.n_classes), schema.ignore, schema.missing,
        source="simulate", plan=plan_sections(plan_settings(Path(cfg.plan))) if cfg.plan else None,
        simulation=cfg.to_dict(), data_source=cfg.dataset, round=cfg.rounds, selected="last",
        sites=[{"name": "averaged model", "rows": len(ds.y_test),
                "metrics": run.rows[-1] if run.rows else {}}],
        training_rows=[int(n) for n in nodes.sizes],
        privacy=None if run.epsilon is None else {"epsilon": run.epsilon, "delta": run.delta},
    )
    return write_bundle(out, Bundle(card, model, pre), graph.raw_of(pre, ds.x_test))


def _sim_classes(cfg: SimConfig, n_classes: int) -> list[str]:
    """A table's class names as its loader orders them (sorted labels), else 0..C-1."""
    source, argument = source_of(cfg.dataset)
    if source.read is None:
        return _classes([], n_classes)
    raw = source.read(Request(cfg.dataset, argument, label_column=cfg.label_column,
                              options=source_options(cfg.dataset, cfg)))
    at = list(raw.header).index(cfg.label_column)
    names = sorted({as_text(r[at]) for _, r in raw.rows}, key=label_key)
    return names if len(names) == n_classes else _classes([], n_classes)


def _consortium(membership: Membership, round: int) -> dict[str, object]:
    """The consortium ID and members of the roster version of the model's last round."""
    era = membership.at(max(0, round - 1))
    return {"id": era.consortium.id.hex(), "roster_version": era.version.version,
            "members": [{"name": m.name, "peer_id": m.peer_id} for m in era.version.roster.members]}
