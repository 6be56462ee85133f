"""Typed settings of one simulation run (p2pfl/config.py fills them from TOML and flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ENGINES = ("vectorized", "reference")
BASELINES = ("none", "centralized", "local")


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
    out: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)
