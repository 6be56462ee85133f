"""The consortium plan as the learning layer takes it: the feature schema, and plan.toml alone
(for the simulator's `--plan`)."""

from __future__ import annotations

from p2pfl.learning.draft import Draft
from p2pfl.learning.schema import FeatureSchema, parse_columns
from p2pfl.settings.node import NodeSettings


def feature_schema(settings: NodeSettings, infer_categories: bool = False) -> FeatureSchema:
    """The plan's [features] with this hospital's column names (data.columns). A node does not
    infer categories: each hospital would find its own (`p2pfl plan draft` lists them)."""
    f = settings.features
    return FeatureSchema(columns=parse_columns(f.columns), ignore=tuple(f.ignore), missing=f.missing,
                         rename=dict(settings.data.columns), infer_categories=infer_categories)


def sim_values(plan: NodeSettings) -> dict[str, object]:
    """The SimConfig values a plan sets: its task, model, training and gossip settings (the
    feature schema is read from the plan file when the data is loaded: `sim_schema`)."""
    t, g, p = plan.training, plan.gossip, plan.privacy
    values: dict[str, object] = {
        "label_column": plan.task.label_column, "partition": plan.task.partition, "seed": t.seed,
        "model": plan.model.kind, "hidden": ",".join(str(h) for h in plan.model.hidden),
        "rounds": t.rounds, "local_steps": t.local_steps, "batch_size": t.batch_size,
        "optimizer": t.optimizer, "lr": t.lr, "momentum": t.momentum, "topology": g.topology,
        "param": [f"{k}={v}" for k, v in g.params.items()], "mixing": g.mixing,
        "aggregator": g.aggregator, "compression": g.compression, "mode": g.mode,
        "max_staleness": g.max_staleness, "staleness_alpha": g.staleness_alpha,
    }
    if p.noise > 0:
        values["dp"] = f"noise={p.noise},clip={p.clip},delta={p.delta}"
    return values


def names_list(text: str | None) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b')."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def apply_draft(settings: NodeSettings, draft: Draft, label_column: str) -> None:
    """Set the plan's task and features to what a table suggests (p2pfl.learning.draft)."""
    settings.task.label_column, settings.task.classes = label_column, list(draft.classes)
    settings.features.columns = [
        {"name": c.name} if c.kind == "numeric" else
        {"name": c.name, "type": c.kind, "categories": list(c.categories)} for c in draft.columns]
    settings.features.ignore = list(draft.ignore)
    if any(draft.missing.get(c.name) for c in draft.columns):
        settings.features.missing = "impute"
