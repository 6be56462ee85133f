"""Typed configuration from TOML files and command-line flags; errors name file, key, reason."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.gossip.compression import parse_compression
from p2pfl.gossip.robust import parse_aggregator
from p2pfl.learning.models import check_model_spec
from p2pfl.net.settings import NodeSettings
from p2pfl.sim.settings import SimConfig, check_sim_table
from p2pfl.tomlio import describe, matches, read_toml


def sim_config(path: Path | None, flags: dict[str, object]) -> SimConfig:
    """SimConfig from defaults, then the TOML file, then the flags that were given."""
    values: dict[str, object] = {}
    if path is not None:
        values.update(check_sim_table(read_toml(path), str(path)))
    values.update({k: v for k, v in flags.items() if v is not None})
    return SimConfig(**values)


def node_settings(path: Path) -> NodeSettings:
    """Read and check node.toml: every unknown section or key and every wrong type is an error
    naming the file and the key."""
    raw = read_toml(path)
    settings = NodeSettings(base_dir=path.resolve().parent)
    for section, table in raw.items():
        target = getattr(settings, section, None)
        if section == "base_dir" or not dataclasses.is_dataclass(target):
            sections = [f.name for f in dataclasses.fields(NodeSettings) if f.name != "base_dir"]
            raise UserError(f"{path}: unknown section [{section}] (known: {', '.join(sections)})")
        if not isinstance(table, dict):
            raise UserError(f"{path}: [{section}] must be a table")
        fields = {f.name for f in dataclasses.fields(target)}
        hints = typing.get_type_hints(type(target))
        for key, value in table.items():
            if key not in fields:
                raise UserError(f"{path}: unknown key {section}.{key} (known: {', '.join(sorted(fields))})")
            hint = hints[key]
            if not matches(value, hint):
                raise UserError(f"{path}: {section}.{key} must be {describe(hint)}, got {value!r}")
            setattr(target, key, float(value) if hint is float else value)
    _check_node(settings, path)
    return settings


def _check_node(s: NodeSettings, path: Path) -> None:
    """Value checks that need no other file."""
    def bad(key: str, why: str) -> UserError:
        return UserError(f"{path}: {key} {why}")

    if not s.node.name:
        raise bad("node.name", "is required (this hospital's name in the roster)")
    if s.training.rounds < 1:
        raise bad("training.rounds", "must be at least 1")
    if s.training.local_steps < 1 or s.training.batch_size < 1:
        raise bad("training.local_steps and training.batch_size", "must be at least 1")
    if s.training.threads < 0:
        raise bad("training.threads", "must be 0 (all cores) or a positive number")
    if not s.training.lr > 0:
        raise bad("training.lr", "must be positive")
    if s.training.optimizer not in ("sgd", "adam"):
        raise bad("training.optimizer", f"must be sgd or adam, got {s.training.optimizer!r}")
    try:
        check_model_spec(s.model.kind)
    except UserError as exc:
        raise bad("model.kind", f"is not valid: {exc}") from None
    if any(h < 1 for h in s.model.hidden):
        raise bad("model.hidden", "sizes must be positive")
    if not s.gossip.round_timeout > 0:
        raise bad("gossip.round_timeout", "must be positive (seconds)")
    for key, parse in (("aggregator", parse_aggregator), ("compression", parse_compression)):
        try:
            parse(getattr(s.gossip, key))
        except UserError as exc:
            raise bad(f"gossip.{key}", f"is not valid: {exc}") from None
    p = s.privacy
    if p.noise < 0 or not p.clip > 0 or not 0 < p.delta < 1 or p.max_epsilon < 0:
        raise bad("[privacy]", "needs noise >= 0, clip > 0, 0 < delta < 1 and max_epsilon >= 0")
    if p.max_epsilon > 0 and p.noise == 0:
        raise bad("privacy.max_epsilon", "is set but privacy.noise is 0: an epsilon target with no "
                  "noise cannot be met")
    if not s.gossip.max_update_mb > 0:
        raise bad("gossip.max_update_mb", "must be positive")
    if s.data.source.startswith("csv:") and len(s.data.classes) < 2:
        raise bad("data.classes", "must list the label values (at least two) for a csv source, "
                  "in the same order at every hospital")


NODE_TEMPLATE = """\
# p2pfl node configuration. Relative paths are relative to this file's folder.
# Every hospital of a consortium uses the same [model], [training] and [gossip] settings.

[node]
name = "{name}"                  # this hospital's name, as in the roster
key_file = "node.key"            # `p2pfl keygen --out node.key` writes it (mode 0600)
passphrase_env = ""              # if the key is encrypted: the environment variable holding the passphrase
listen = "/ip4/0.0.0.0/tcp/9001" # open this TCP port to the other members
state_dir = "state"              # checkpoint.pt, metrics.jsonl
roster = "roster.toml"           # the consortium's members: name, peer_id, addresses

[data]
source = "csv:patients.csv"      # your table; or breast_cancer / digits for a trial on bundled data
label_column = "label"
classes = ["0", "1"]             # label values, in the same order at every hospital
partition = "iid"                # only for bundled data: how it is split among the members
seed = 0

[model]
kind = "mlp"                     # logreg or mlp
hidden = [32]

[training]
run = "run-1"                    # the same at every hospital; updates of another run are refused
rounds = 50
local_steps = 10                 # mini-batch steps per round
batch_size = 32
optimizer = "sgd"                # sgd or adam
lr = 0.05
momentum = 0.9
seed = 0                         # same at every hospital: same initial model
threads = 0                      # torch CPU threads (0: all cores)

[gossip]
topology = "ring"                # see `p2pfl topology --help`
params = {{}}                      # topology parameters, e.g. {{ p = 0.3 }}
mixing = "metropolis_hastings"
seed = 0                         # shared: time-varying topologies draw the same graphs everywhere
round_timeout = 30.0             # seconds to wait for neighbours after sending
aggregator = "mean"              # mean, or robust: trimmed_mean:b=1, median, clipped
compression = "none"             # none, float16, int8, topk:fraction=0.01 (static topologies)
max_update_mb = 512.0            # larger updates are refused before they are read

[privacy]
noise = 0.0                      # DP-SGD noise multiplier (e.g. 1.0); 0: off
clip = 1.0                       # per-example gradient norm bound
delta = 1e-5                     # epsilon is reported at this delta (metrics.jsonl)
max_epsilon = 0.0                # refuse to start if the planned rounds would exceed it; 0: no limit
"""
