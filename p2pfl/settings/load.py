"""Typed settings from TOML files and command-line flags; errors name file, key and reason."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import FeatureSchema
from p2pfl.learning.sources import source_of
from p2pfl.settings.fields import check_of
from p2pfl.settings.node import NODE_FILE, PLAN_FILE, NodeSettings, file_of, keys_of, sections
from p2pfl.settings.plan import feature_schema, names_list, sim_values
from p2pfl.settings.sim import SimConfig, check_sim_table
from p2pfl.tomlio import describe, matches, read_toml


def sim_config(path: Path | None, flags: dict[str, object]) -> SimConfig:
    """SimConfig from defaults, then a consortium plan (`plan`, from the flags or the file), then
    the TOML file, then the flags that were given."""
    given: dict[str, object] = {}
    if path is not None:
        given.update(check_sim_table(read_toml(path), str(path)))
    given.update({k: v for k, v in flags.items() if v is not None})
    values: dict[str, object] = {}
    if given.get("plan"):
        plan = Path(str(given["plan"]))
        if path is not None and not plan.is_absolute() and "plan" not in flags:
            plan = path.parent / plan  # a plan named in the file: beside the file
        given["plan"] = str(plan)
        values.update(sim_values(plan_settings(plan)))
    values.update(given)
    return SimConfig(**values)


def plan_settings(path: Path) -> NodeSettings:
    """The settings of plan.toml alone (node.toml's keys at their defaults), checked."""
    settings = NodeSettings(base_dir=path.resolve().parent)
    _apply(settings, read_toml(path), path, PLAN_FILE)
    _check_fields(settings, {NODE_FILE: path, PLAN_FILE: path})
    return settings


def node_settings(path: Path) -> NodeSettings:
    """Read and check node.toml and the plan it names (node.plan): every unknown section or key,
    a key in the wrong one of the two files, every wrong type and every bad value is an error
    naming the file and the key."""
    settings = NodeSettings(base_dir=path.resolve().parent)
    _apply(settings, read_toml(path), path, NODE_FILE)
    plan = settings.path(settings.node.plan)
    if not plan.is_file():
        raise UserError(f"{plan}: no such plan file ({path} names it in node.plan; every member "
                        "holds the same plan.toml: `p2pfl init` writes a template)")
    _apply(settings, read_toml(plan), plan, PLAN_FILE)
    files = {NODE_FILE: path, PLAN_FILE: plan}
    _check_fields(settings, files)
    _check_node(settings, files)
    return settings


def plan_path(settings: NodeSettings) -> Path:
    """The plan file node.toml names."""
    return settings.path(settings.node.plan)


def _apply(settings: NodeSettings, raw: dict[str, object], path: Path, file: str) -> None:
    """Set the keys of one of the two files (`file`: NODE_FILE or PLAN_FILE) from its table."""
    held = keys_of(file)
    other = PLAN_FILE if file == NODE_FILE else NODE_FILE
    for section, table in raw.items():
        target = getattr(settings, section, None)
        if section == "base_dir" or not dataclasses.is_dataclass(target):
            raise UserError(f"{path}: unknown section [{section}] (known: {', '.join(held)})")
        if not isinstance(table, dict):
            raise UserError(f"{path}: [{section}] must be a table")
        hints = typing.get_type_hints(type(target))
        for key, value in table.items():
            if key not in hints:
                raise UserError(f"{path}: unknown key {section}.{key} "
                                f"(known: {', '.join(held.get(section, [])) or 'none in this file'})")
            if key not in held.get(section, []):
                why = ("it is the same at every member" if other == PLAN_FILE
                       else "it is this hospital's own")
                raise UserError(f"{path}: {section}.{key} belongs in {other}, not {file} ({why})")
            hint = hints[key]
            if not matches(value, hint):
                raise UserError(f"{path}: {section}.{key} must be {describe(hint)}, got {value!r}")
            setattr(target, key, float(value) if hint is float else value)


def _check_fields(s: NodeSettings, files: dict[str, Path]) -> None:
    """The check each field's metadata declares (p2pfl.settings.fields)."""
    for section in sections():
        target = getattr(s, section)
        for f in dataclasses.fields(target):
            check = check_of(f)
            why = check(getattr(target, f.name)) if check else None
            if why:
                raise UserError(f"{files[file_of(section, f)]}: {section}.{f.name} {why}")


def _check_node(s: NodeSettings, files: dict[str, Path]) -> None:
    """Checks that involve more than one key."""
    node_file, plan = files[NODE_FILE], files[PLAN_FILE]

    def bad(key: str, why: str, path: Path = plan) -> UserError:
        return UserError(f"{path}: {key} {why}")

    if not s.node.name:
        raise bad("node.name", "is required (this hospital's name in the roster)", node_file)
    if s.node.relay and s.node.reachability != "direct":
        raise bad("node.relay", "needs reachability = \"direct\": a relay must accept the inbound "
                  "connections of the members it serves", node_file)
    p = s.privacy
    if p.noise < 0 or not p.clip > 0 or not 0 < p.delta < 1 or p.max_epsilon < 0:
        raise bad("[privacy]", "needs noise >= 0, clip > 0, 0 < delta < 1 and max_epsilon >= 0")
    if p.max_epsilon > 0 and p.noise == 0:
        raise bad("privacy.max_epsilon", "is set but privacy.noise is 0: an epsilon target with no "
                  "noise cannot be met")
    try:
        source, _ = source_of(s.data.source)
    except LearningSettingError as exc:
        raise bad("data.source", f"is not valid: {exc}", node_file) from None
    if not source.shared and len(s.task.classes) < 2:
        raise bad("task.classes", f"must list the label values (at least two) for a {source.name} "
                  f"source (a hospital's own table, {node_file} data.source), in the same order at "
                  "every hospital")
    f = s.features
    named = [str(c.get("name")) for c in f.columns]
    for key, names in (("features.ignore", f.ignore), ("features.columns", named)):
        if s.task.label_column in names:
            raise bad(key, f"lists the label column {s.task.label_column!r}")
    if both := sorted(set(f.ignore) & set(named)):
        raise bad("features.ignore", f"lists {both[0]!r}, a column of features.columns")


def sim_schema(cfg: SimConfig) -> tuple[FeatureSchema, list[str] | None]:
    """The feature schema and classes of a simulation: its plan's, or its flags' (text columns
    are categorical, with the categories found in the one table the simulator reads)."""
    if cfg.plan:
        plan = plan_settings(Path(cfg.plan))
        return feature_schema(plan, infer_categories=True), list(plan.task.classes) or None
    return FeatureSchema(ignore=names_list(cfg.ignore), missing=cfg.missing,
                         categorical=names_list(cfg.categorical)), None
