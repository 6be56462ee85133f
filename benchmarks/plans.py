"""Editing the plan of a demo consortium set up by p2pfl.demo.setup, for the network benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from p2pfl.settings.toml_out import dumps_document
from p2pfl.tomlio import read_toml


def edit_plans(configs: Iterable[Path], changes: dict[str, dict[str, object]]) -> None:
    """Set {section: {key: value}} in every member's copy of plan.toml (beside its node.toml)."""
    for config in configs:
        plan = config.parent / "plan.toml"
        raw = read_toml(plan)
        for section, values in changes.items():
            raw[section].update(values)  # type: ignore[union-attr]
        plan.write_text(dumps_document(raw))
