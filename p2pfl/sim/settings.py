"""Typed settings of one simulation run (p2pfl/config.py fills them from TOML and flags)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field

from p2pfl.errors import UserError
from p2pfl.tomlio import describe, matches

ENGINES = ("vectorized", "reference")
BASELINES = ("none", "centralized", "local")

# Robustness settings (issue 6) and their defaults: a run at these defaults is the plain D-PSGD
# run of before, and its experiment key leaves them out (so earlier committed results stay valid).
ROBUSTNESS_DEFAULTS: dict[str, object] = {
    "aggregator": "mean", "compression": "none", "dp": None, "dropout": 0.0, "stragglers": 0.0,
    "message_loss": 0.0, "attack": None,
}


@dataclass
class SimConfig:
    """Every knob of `p2pfl simulate`; field names are the TOML keys and (with dashes) the flags."""

    dataset: str = "digits"
    model: str = "mlp"
    hidden: str = "32"
    nodes: int = 16
    topology: str = "exponential"
    param: list[str] = field(default_factory=list)
    mixing: str = "metropolis_hastings"
    partition: str = "iid"
    rounds: int = 50
    local_steps: int | None = None
    local_epochs: int | None = None
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    engine: str = "vectorized"
    baseline: str = "none"
    eval_every: int = 10
    label_column: str = "label"
    site_column: str | None = None
    allow_disconnected: bool = False
    aggregator: str = "mean"  # mean, trimmed_mean[:b=B], median, clipped[:delta=D|:tau=T]
    compression: str = "none"  # none, topk[:fraction=F,gamma=G], int8[:...], float16
    dp: str | None = None  # "noise=SIGMA,clip=C[,delta=D]" (DP-SGD), or None / "none"
    dropout: float = 0.0  # chance a node is offline in a round
    stragglers: float = 0.0  # chance a node's update misses the round's deadline
    message_loss: float = 0.0  # chance a message is lost
    attack: str | None = None  # "NAME:FRACTION" (sign_flip, gaussian, label_flip, alie), or None / "none"
    out: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


def check_sim_table(raw: dict[str, object], where: str) -> dict[str, object]:
    """Check every key and value type of a simulate TOML table against SimConfig.

    `param` may be a table ({p = 0.1}) and `hidden` a list ([32, 16]); both are turned into the
    flag forms. Errors name `where` (the file) and the key.
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
            value = ",".join(str(v) for v in value)
        if not matches(value, hints[name]):
            raise UserError(f"{where}: key {key!r} must be {describe(hints[name])}, got {value!r}")
        out[name] = float(value) if hints[name] is float else value
    return out
