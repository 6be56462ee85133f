"""The settings of one `p2pfl simulate` run: TOML keys, and (with dashes) its flags.

Field names, types and defaults are part of every experiment's run key
(p2pfl.experiments.spec.run_key): changing one changes the key of every committed result.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass

from p2pfl.errors import UserError
from p2pfl.settings import choices
from p2pfl.settings import fields as F
from p2pfl.settings.fields import setting
from p2pfl.tomlio import describe, matches

ENGINES = ("vectorized", "reference")
BASELINES = ("none", "centralized", "local")

# Robustness settings (issue 6) and their defaults: a run at these defaults is the plain D-PSGD
# run of before, and its experiment key leaves them out (so earlier committed results stay valid).
ROBUSTNESS_DEFAULTS: dict[str, object] = {
    "aggregator": F.AGGREGATOR.default, "compression": F.COMPRESSION.default, "dp": None, "dropout": 0.0,
    "stragglers": 0.0, "message_loss": 0.0, "attack": None,
}

# Data-source options (the sql source's): at their defaults, left out of the run key too.
SOURCE_DEFAULTS: dict[str, object] = {
    "sql_query": F.SQL_QUERY.default, "sql_table": F.SQL_TABLE.default,
    "password_env": F.PASSWORD_ENV.default,
}
# The feature schema of a hospital table (issue 11): at their defaults, left out of the run key.
SCHEMA_DEFAULTS: dict[str, object] = {"plan": None, "categorical": None, "ignore": None, "missing": "error"}
# Where the averaged model is exported (issue 12): no result depends on it.
OUTPUT_DEFAULTS: dict[str, object] = {"export": None}
# Asynchronous gossip (issue 15) and per-node speeds: at their defaults the synchronous run of before.
ASYNC_DEFAULTS: dict[str, object] = {"mode": F.GOSSIP_MODE.default, "max_staleness": F.MAX_STALENESS.default,
                                     "staleness_alpha": F.STALENESS_ALPHA.default, "speeds": None}
# Every setting a run key leaves out at its default (p2pfl.experiments.spec.run_key).
KEYLESS_DEFAULTS: dict[str, object] = {**ROBUSTNESS_DEFAULTS, **SOURCE_DEFAULTS, **SCHEMA_DEFAULTS,
                                       **OUTPUT_DEFAULTS, **ASYNC_DEFAULTS}


def _hidden_text(sizes: list[int]) -> str:
    return ",".join(str(h) for h in sizes)


@dataclass
class SimConfig:
    """Every knob of `p2pfl simulate`; field names are the TOML keys and (with dashes) the flags."""

    dataset: str = F.DATASET.field()
    model: str = F.MODEL.field()
    hidden: str = setting(_hidden_text(F.HIDDEN.default), F.HIDDEN.help + ", e.g. 32,16")  # flag form
    nodes: int = setting(16, "number of simulated hospitals")
    topology: str = F.TOPOLOGY.field()
    param: list[str] = setting([], "topology parameter (repeatable)", metavar="K=V", action="append")
    mixing: str = F.MIXING.field()
    partition: str = F.PARTITION.field()
    rounds: int = F.ROUNDS.field()
    # None: LOCAL_STEPS.default steps per round, unless local_epochs is given
    local_steps: int | None = setting(None, f"{F.LOCAL_STEPS.help} (default: {F.LOCAL_STEPS.default})",
                                      exclusive="steps")
    local_epochs: int | None = setting(None, "local epochs per round (instead of --local-steps)",
                                       exclusive="steps")
    batch_size: int = F.BATCH_SIZE.field()
    optimizer: str = F.OPTIMIZER.field()
    lr: float = F.LR.field()
    momentum: float = F.MOMENTUM.field()
    seed: int = F.SEED.field()
    engine: str = setting("vectorized", f"{' or '.join(ENGINES)} (the readable per-node loop)")
    baseline: str = setting("none", f"also train a baseline: {', '.join(BASELINES)}")
    eval_every: int = setting(10, "evaluate every this many rounds")
    label_column: str = F.LABEL_COLUMN.field()
    site_column: str | None = setting(None, "site column of a CSV dataset (for --partition site)")
    plan: str | None = setting(None, "a consortium's plan.toml: its task, feature schema, model, "
                               "training and gossip settings (flags and the --config file still win)",
                               metavar="PLAN")
    categorical: str | None = setting(None, "columns taken as categorical although their values are "
                                      "numbers (text columns are categorical anyway)", metavar="COL,...")
    ignore: str | None = setting(None, "columns that are not features (IDs, dates)", metavar="COL,...")
    missing: str = setting("error", "an empty cell: error, drop_row, or impute (mean, or most "
                           "frequent category)", F.one_of("error", "drop_row", "impute"))
    sql_query: str = F.SQL_QUERY.field()
    sql_table: str = F.SQL_TABLE.field()
    password_env: str = F.PASSWORD_ENV.field()
    allow_disconnected: bool = setting(False, "simulate a disconnected topology anyway")
    aggregator: str = F.AGGREGATOR.field()
    compression: str = F.COMPRESSION.field()
    dp: str | None = setting(None, "DP-SGD in local training", metavar="noise=SIGMA,clip=C[,delta=D]")
    dropout: float = setting(0.0, "chance a node is offline each round", metavar="P")
    stragglers: float = setting(0.0, "chance a node's update misses the round's deadline", metavar="P")
    message_loss: float = setting(0.0, "chance each message is lost", metavar="P")
    attack: str | None = setting(None, choices.attack_help, metavar="NAME:FRACTION")
    mode: str = F.GOSSIP_MODE.field()
    max_staleness: int = F.MAX_STALENESS.field()
    staleness_alpha: float = F.STALENESS_ALPHA.field()
    speeds: str | None = setting(None, "how long one local round takes at each node, in simulated time "
                                 "units: lognormal:SIGMA (seeded factors exp(SIGMA z), median 1), "
                                 "slowest:F (node 0 takes F, the others 1) or a list T0,T1,... of "
                                 "one time per node (default: all 1)",
                                 metavar="lognormal:SIGMA|slowest:F|T0,T1,...")
    out: str | None = setting(None, "folder for metrics.csv, config.json and convergence.png")
    export: str | None = setting(None, "write the averaged model as a bundle (model.safetensors, "
                                 "model.json, model.onnx) in this new folder", metavar="DIR")

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


def local_steps(cfg: SimConfig) -> int | None:
    """Steps per round of `cfg` (None when it trains for local_epochs instead)."""
    if cfg.local_epochs:
        return None
    return cfg.local_steps or F.LOCAL_STEPS.default  # type: ignore[return-value]


def check_sim_table(raw: dict[str, object], where: str) -> dict[str, object]:
    """Check every key and value type of a simulate TOML table against SimConfig.

    `param` may be a table ({p = 0.1}), `hidden` and `speeds` lists ([32, 16]); they are turned into
    the flag forms. Errors name `where` (the file) and the key.
    """
    fields = {f.name for f in dataclasses.fields(SimConfig)}
    hints = typing.get_type_hints(SimConfig)
    out: dict[str, object] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise UserError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
        if name == "param" and isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        if name == "hidden" and isinstance(value, list):
            value = _hidden_text(value)
        if name == "speeds" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if not matches(value, hints[name]):
            raise UserError(f"{where}: key {key!r} must be {describe(hints[name])}, got {value!r}")
        out[name] = float(value) if hints[name] is float else value
    return out
