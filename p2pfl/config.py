"""Typed configuration from TOML files and command-line flags; errors name file, key, reason."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.net.settings import NodeSettings
from p2pfl.sim.settings import SimConfig


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file; a missing file or a syntax error is a UserError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


def sim_config(path: Path | None, flags: dict[str, object]) -> SimConfig:
    """SimConfig from defaults, then the TOML file, then the flags that were given."""
    values: dict[str, object] = {}
    if path is not None:
        values.update(_checked(read_toml(path), str(path)))
    values.update({k: v for k, v in flags.items() if v is not None})
    return SimConfig(**values)


def _checked(raw: dict[str, object], where: str) -> dict[str, object]:
    """Check every key and value type of a simulate TOML table against SimConfig."""
    fields = {f.name: f for f in dataclasses.fields(SimConfig)}
    hints = typing.get_type_hints(SimConfig)
    out: dict[str, object] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise UserError(f"{where}: unknown key {key!r} (known: {', '.join(fields)})")
        if name == "param" and isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        if name == "hidden" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if not _matches(value, hints[name]):
            raise UserError(f"{where}: key {key!r} must be {_describe(hints[name])}, got {value!r}")
        out[name] = float(value) if hints[name] is float else value
    return out


def _matches(value: object, hint: object) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, hint)  # type: ignore[arg-type]


def _describe(hint: object) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


AGGREGATORS = ("mean",)


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
            ok = isinstance(value, dict) if typing.get_origin(hint) is dict else _matches_list(value, hint)
            if not ok:
                raise UserError(f"{path}: {section}.{key} must be {_describe_any(hint)}, got {value!r}")
            setattr(target, key, float(value) if hint is float else value)
    _check_node(settings, path)
    return settings


def _matches_list(value: object, hint: object) -> bool:
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    return _matches(value, hint)


def _describe_any(hint: object) -> str:
    if typing.get_origin(hint) is list:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    if typing.get_origin(hint) is dict:
        return "a table"
    return _describe(hint)


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
    if s.model.kind not in ("logreg", "mlp"):
        raise bad("model.kind", f"must be logreg or mlp, got {s.model.kind!r}")
    if any(h < 1 for h in s.model.hidden):
        raise bad("model.hidden", "sizes must be positive")
    if not s.gossip.round_timeout > 0:
        raise bad("gossip.round_timeout", "must be positive (seconds)")
    if s.gossip.aggregator not in AGGREGATORS:
        raise bad("gossip.aggregator", f"must be one of {', '.join(AGGREGATORS)}, "
                  f"got {s.gossip.aggregator!r}")
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
aggregator = "mean"
max_update_mb = 512.0            # larger updates are refused before they are read
"""
