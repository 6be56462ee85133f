"""The settings of a node, in two files: every key's default, help text, check and file.

`plan.toml` is the consortium's plan, the one file every member holds identically (exchanged out
of band, like roster.toml): the task, the feature schema, the model, training, gossip and
privacy settings. Its content (with the roster) makes the consortium ID. `node.toml` holds what
is this hospital's own: key, listen address, state folder, the roster and plan paths, threads,
timeouts and where its table is (with a mapping of its column names to the plan's).

A key lives in one file: the [node] and [data] sections are node.toml's; in the other sections a
field declared with `local=True` is node.toml's, every other one the plan's.
(p2pfl.settings.load reads both, p2pfl.settings.toml_out writes them and the `p2pfl init`
templates.)"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from p2pfl.settings import fields as F
from p2pfl.settings.fields import positive, setting

SELECTION_METRICS = ("", "accuracy", "balanced_accuracy", "auroc")  # training.select


def _metrics_listen(value: str) -> str | None:
    host, colon, port = value.rpartition(":")
    ok = not value or (colon and host and port.isdigit() and 0 < int(port) < 65536)
    return None if ok else f"must be HOST:PORT (e.g. 127.0.0.1:9464) or empty, got {value!r}"


@dataclass
class NodeSection:
    """This hospital's identity, key and addresses (local: may differ between members)."""

    name: str = setting("", "this hospital's name, as in the roster (required)")
    key_file: str = setting("node.key", "`p2pfl keygen --out node.key` writes it (mode 0600)")
    passphrase_env: str = setting("", "if the key is encrypted: the environment variable holding "
                                  "the passphrase")
    listen: str = setting("/ip4/0.0.0.0/tcp/9001", "open this TCP port to the other members "
                          "(not used with reachability = \"outbound\")")
    reachability: str = setting("direct", "direct: the other members can connect to `listen`; "
                                "outbound: this node cannot accept inbound connections, listens "
                                "nowhere and is reached through the relay members its roster "
                                "addresses name (/p2p-circuit)", F.one_of("direct", "outbound"))
    relay: bool = setting(False, "offer a circuit relay to roster members that cannot accept "
                          "inbound connections (needs reachability = \"direct\")")
    state_dir: str = setting("state", "checkpoint.pt and metrics.jsonl go here")
    roster: str = setting("roster.toml", "the consortium's members: name, peer_id, addresses")
    plan: str = setting("plan.toml", "the consortium's plan (task, features, model, training, "
                        "gossip, privacy): the same file at every member")
    metrics_listen: str = setting("", "serve Prometheus metrics on HOST:PORT, e.g. 127.0.0.1:9464 "
                                  "(\"\": off)", _metrics_listen)
    log_format: str = setting("text", "log lines on stderr: text (time level node=... event=... "
                              "key=value) or json (one object per line)", F.one_of("text", "json"))

@dataclass
class DataSection:
    """Where this hospital's rows come from (local)."""

    source: str = F.DATASET.field()
    sql_query: str = F.SQL_QUERY.field()
    sql_table: str = F.SQL_TABLE.field()
    password_env: str = F.PASSWORD_ENV.field()
    columns: dict[str, str] = setting({}, "this table's column names -> the plan's, where they "
                                      "differ, e.g. { \"Glucose (mg/dl)\" = \"glucose\" }", F.text_map)

@dataclass
class TaskSection:
    """What the consortium learns to predict (plan)."""

    label_column: str = F.LABEL_COLUMN.field()
    classes: list[str] = setting([], "label values, in this order at every hospital (required for a "
                                 "hospital's own table: a csv, parquet or sql source)")
    partition: str = F.PARTITION.field()
    seed: int = setting(F.SEED.default, "seed of the train/validation split and of a shared "
                        "dataset's partition")

@dataclass
class FeaturesSection:
    """The feature schema (plan): the model's inputs, in this order, at every hospital."""

    columns: list[dict[str, object]] = setting(
        [], "each feature column: { name = \"age\" } (numeric) or { name = \"sex\", type = "
        "\"categorical\", categories = [\"female\", \"male\"] }; empty: every other column, "
        "numeric (`p2pfl plan draft` proposes this list)", F.features_check)
    ignore: list[str] = setting([], "columns of the tables that are not features (IDs, dates)")
    missing: str = setting("error", "an empty cell: error (refuse the table), drop_row, or impute "
                           "(the consortium's mean, or most frequent category)",
                           F.one_of("error", "drop_row", "impute"))

@dataclass
class ModelSection:
    """The model every member trains."""

    kind: str = F.MODEL.field()
    hidden: list[int] = F.HIDDEN.field()

@dataclass
class TrainingSection:
    """Local training; the same at every member except `threads`."""

    run: str = setting("run-1", "a name for this training run, the same at every member: updates of "
                       "another run are refused, a new name starts a new run")
    rounds: int = F.ROUNDS.field()
    local_steps: int = F.LOCAL_STEPS.field()
    batch_size: int = F.BATCH_SIZE.field()
    optimizer: str = F.OPTIMIZER.field()
    lr: float = F.LR.field()
    momentum: float = F.MOMENTUM.field()
    seed: int = F.SEED.field()
    select: str = setting("", "keep the model of the best round by this validation metric, the "
                          "median over the members' reports: accuracy, balanced_accuracy or auroc "
                          "(\"\": the last round); each round's model is kept until training ends",
                          lambda v: None if v in SELECTION_METRICS else 'must be "" (the last round), '
                          f"accuracy, balanced_accuracy or auroc, got {v!r}")
    threads: int = setting(0, "torch CPU threads (0: all cores)",
                           lambda v: None if v >= 0 else "must be 0 (all cores) or a positive number",
                           local=True)

@dataclass
class GossipSection:
    """The exchange of models with the neighbours."""

    topology: str = F.TOPOLOGY.field()
    params: dict[str, object] = setting({}, "topology parameters, e.g. { p = 0.3 }")
    mixing: str = F.MIXING.field()
    seed: int = setting(F.SEED.default, "time-varying topologies draw the same graphs everywhere "
                        "from this seed")
    round_timeout: float = setting(30.0, "seconds to wait for the neighbours after sending",
                                   positive("seconds"), local=True)
    min_peers: int = setting(-1, "before round 0, wait until this many in-neighbours of round 0 are "
                             "reachable and of the same consortium (-1: all of them; 0: do not wait)",
                             lambda v: None if v >= -1 else "must be -1 (all), 0 (do not wait) or a "
                             "number of peers")
    start_timeout: float = setting(600.0, "seconds to wait for min_peers before giving up (exit 6)",
                                   positive("seconds"), local=True)
    aggregator: str = F.AGGREGATOR.field()
    compression: str = F.COMPRESSION.field()
    mode: str = F.GOSSIP_MODE.field()
    max_staleness: int = F.MAX_STALENESS.field()
    staleness_alpha: float = F.STALENESS_ALPHA.field()
    max_update_mb: float = setting(512.0, "larger updates are refused before they are read",
                                   positive(), local=True)
    report_timeout: float = setting(60.0, "seconds to wait, when training ends, for every member's "
                                    "site report (consortium_report.json names the missing)",
                                    positive("seconds"), local=True)

@dataclass
class PrivacySection:
    """DP-SGD in local training (Abadi et al., CCS 2016)."""

    noise: float = setting(0.0, "DP-SGD noise multiplier (e.g. 1.0); 0: off")
    clip: float = setting(1.0, "per-example gradient norm bound")
    delta: float = F.DP_DELTA.field()
    max_epsilon: float = setting(0.0, "refuse to start if the planned rounds would spend more; 0: no limit")

@dataclass
class NodeSettings:
    """All sections of node.toml; relative paths are relative to the file's folder."""

    node: NodeSection = field(default_factory=NodeSection)
    data: DataSection = field(default_factory=DataSection)
    task: TaskSection = field(default_factory=TaskSection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    gossip: GossipSection = field(default_factory=GossipSection)
    privacy: PrivacySection = field(default_factory=PrivacySection)
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

NODE_FILE, PLAN_FILE = "node.toml", "plan.toml"
LOCAL_SECTIONS = ("node", "data")  # every key of these is node.toml's


def sections() -> list[str]:
    """The section names of the settings, in file order."""
    from dataclasses import fields

    return [f.name for f in fields(NodeSettings) if f.name != "base_dir"]


def file_of(section: str, f: dataclasses.Field) -> str:
    """NODE_FILE or PLAN_FILE: the file the key `section.<f.name>` lives in."""
    return NODE_FILE if section in LOCAL_SECTIONS or f.metadata.get("local") else PLAN_FILE


def keys_of(file: str) -> dict[str, list[str]]:
    """Section -> the keys of it that `file` holds, in declaration order (sections it has none of
    are left out)."""
    out: dict[str, list[str]] = {}
    for section in sections():
        names = [f.name for f in dataclasses.fields(_SECTION_TYPES[section]) if file_of(section, f) == file]
        if names:
            out[section] = names
    return out


_SECTION_TYPES = {f.name: f.default_factory for f in dataclasses.fields(NodeSettings)  # type: ignore[misc]
                  if f.name != "base_dir"}
