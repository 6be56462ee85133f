"""Typed settings of one node daemon (p2pfl/config.py reads them from node.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NodeSection:
    name: str = ""
    key_file: str = "node.key"
    passphrase_env: str = ""  # name of an environment variable holding the key passphrase
    listen: str = "/ip4/0.0.0.0/tcp/9001"
    state_dir: str = "state"
    roster: str = "roster.toml"


@dataclass
class DataSection:
    source: str = "breast_cancer"  # breast_cancer, digits, synthetic[:...] (shards) or csv:PATH
    label_column: str = "label"
    classes: list[str] = field(default_factory=list)  # label order; required for csv
    partition: str = "iid"  # how a bundled dataset is split among the roster's members
    seed: int = 0


@dataclass
class ModelSection:
    kind: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [32])


@dataclass
class TrainingSection:
    run: str = ""  # a name for this training run, the same at every member: a new name starts a new run
    rounds: int = 10
    local_steps: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0: torch's default (all cores)


@dataclass
class GossipSection:
    topology: str = "ring"
    params: dict[str, object] = field(default_factory=dict)
    mixing: str = "metropolis_hastings"
    seed: int = 0
    round_timeout: float = 30.0
    aggregator: str = "mean"  # mean, trimmed_mean:b=1, median, clipped[:delta=0.1]
    compression: str = "none"  # none, float16, int8[:chunk=256], topk:fraction=0.01[,gamma=G]
    max_update_mb: float = 512.0


@dataclass
class PrivacySection:
    noise: float = 0.0  # DP-SGD noise multiplier; 0: no differential privacy
    clip: float = 1.0  # per-example gradient norm bound
    delta: float = 1e-5  # epsilon is reported at this delta
    max_epsilon: float = 0.0  # refuse to start if the planned rounds would spend more; 0: no limit


@dataclass
class NodeSettings:
    """All sections of node.toml; relative paths are relative to the file's folder."""

    node: NodeSection = field(default_factory=NodeSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    gossip: GossipSection = field(default_factory=GossipSection)
    privacy: PrivacySection = field(default_factory=PrivacySection)
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p
