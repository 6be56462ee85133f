"""Declaring a setting: its default, its help text and its check, in one place.

`Concept` is a setting that the node daemon (node.toml) and the simulator (`p2pfl simulate`)
both have; `SHARED` below declares each one once, with one default, and both schemas make their
dataclass fields from it. `setting()` declares a field that only one schema has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2pfl.errors import BAD_INPUT
from p2pfl.settings import choices

Check = Callable[[Any], "str | None"]  # a value -> None if fine, else the reason ("must be ...")
Help = str | Callable[[], str]  # a callable when the text lists a registry (built when shown)


def setting(default: object, help: Help, check: Check | None = None, **meta: object) -> Any:
    """A dataclass field whose metadata holds its help text and its check.

    A list default is copied for every instance; other metadata (e.g. `metavar`) goes along.
    """
    metadata = {"help": help, "check": check, **meta}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(f: dataclasses.Field) -> str:
    """The field's help text (a registry's members are listed only now: no import before)."""
    text = f.metadata.get("help", "")
    return text() if callable(text) else str(text)


def check_of(f: dataclasses.Field) -> Check | None:
    return f.metadata.get("check")


# -- checks ---------------------------------------------------------------------------------

def at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}"


def positive(unit: str = "") -> Check:
    suffix = f" ({unit})" if unit else ""
    return lambda v: None if v > 0 else f"must be positive{suffix}"


def one_of(*names: str) -> Check:
    allowed = " or ".join(names) if len(names) == 2 else ", ".join(names)
    return lambda v: None if v in names else f"must be {allowed}, got {v!r}"


def parsed_by(parse: Callable[[str], object]) -> Check:
    """Valid when `parse` (the component's own parser) accepts the value."""
    def check(value: object) -> str | None:
        try:
            parse(str(value))
        except BAD_INPUT as exc:
            return f"is not valid: {exc}"
        return None
    return check


def _aggregator(value: object) -> str | None:
    from p2pfl.gossip.robust import parse_aggregator

    return parsed_by(parse_aggregator)(value)


def _compression(value: object) -> str | None:
    from p2pfl.gossip.compression import parse_compression

    return parsed_by(parse_compression)(value)


def _sql_query(value: object) -> str | None:
    from p2pfl.learning.sources.sql import check_query

    return parsed_by(check_query)(value)


def features_check(value: object) -> str | None:
    """features.columns: each entry a column of the feature schema (p2pfl.learning.schema)."""
    if not value:
        return None
    from p2pfl.learning.schema import parse_columns

    try:
        parse_columns(value)  # type: ignore[arg-type]
    except BAD_INPUT as exc:
        return f"is not valid: {exc}"
    return None


def text_map(value: object) -> str | None:
    """A table of strings to strings."""
    bad = [k for k, v in value.items() if not isinstance(v, str) or not v]  # type: ignore[attr-defined]
    return f"must map names to non-empty strings ({bad[0]!r} does not)" if bad else None


def _model(value: object) -> str | None:
    from p2pfl.learning.models import check_model_spec

    return parsed_by(check_model_spec)(value)


# -- settings both the node and the simulator have ----------------------------------------

@dataclass(frozen=True)
class Concept:
    """One setting both schemas have: its default, help text and check."""

    default: object
    help: Help
    check: Check | None = None

    def field(self, **meta: object) -> Any:
        """The dataclass field of this concept in a schema."""
        return setting(self.default, self.help, self.check, **meta)


# Defaults: the simulator's (every committed experiment's run key hashes them, see
# p2pfl.experiments.spec.run_key), so the node daemon now starts from the same ones.
ROUNDS = Concept(50, "communication rounds (each: local training, then one exchange with the neighbours)",
                 at_least(1))
LOCAL_STEPS = Concept(1, "local mini-batch SGD steps per round (D-PSGD takes one, Lian et al. 2017)",
                      at_least(1))
BATCH_SIZE = Concept(32, "mini-batch size of local training", at_least(1))
OPTIMIZER = Concept("sgd", "local optimizer: sgd or adam", one_of("sgd", "adam"))
LR = Concept(0.05, "learning rate", positive())
MOMENTUM = Concept(0.9, "SGD momentum (optimizer state stays local)")
SEED = Concept(0, "random seed; the same at every member (same initial model, data split and graphs)")
DATASET = Concept("digits", choices.source_help)
LABEL_COLUMN = Concept("label", "label column of a hospital's table (csv, parquet, sql)")
PARTITION = Concept("iid", choices.partition_help)
MODEL = Concept("mlp", choices.model_help, _model)
HIDDEN = Concept([32], "MLP hidden layer sizes", lambda v: None if all(h >= 1 for h in v)
                 else "sizes must be positive")
TOPOLOGY = Concept("exponential", choices.topology_help)
MIXING = Concept("metropolis_hastings", "mixing weights: metropolis_hastings, max_degree or uniform")
AGGREGATOR = Concept("mean", choices.aggregator_help, _aggregator)
COMPRESSION = Concept("none", choices.compression_help, _compression)
DP_DELTA = Concept(1e-5, "DP-SGD: epsilon is reported at this delta")
GOSSIP_MODE = Concept("sync", "sync: every round waits for the in-neighbours (or the deadline); overlap: "
                      "the same rounds, but a node sends the model it starts a round with and trains "
                      "while its neighbours' arrive, then mixes them and adds its own training's change "
                      "(D-PSGD as Lian et al. 2017 write it); async: no barrier, each node mixes the "
                      "latest model it holds from each in-neighbour, discounted by its staleness "
                      "(p2pfl.gossip.staleness)", one_of("sync", "overlap", "async"))
MAX_STALENESS = Concept(4, "async: models more than this many local rounds old are left out of a mix",
                        at_least(0))
STALENESS_ALPHA = Concept(0.5, "async: a model a rounds old counts (1 + a) ** -alpha of its weight",
                          lambda v: None if v >= 0 else "must be 0 or more")
# Options of a data source (p2pfl.learning.sources: DataSource.options), here the sql source's.
SQL_QUERY = Concept("", "sql source: the SELECT that gives the rows, in its order (or sql_table)",
                    _sql_query)
SQL_TABLE = Concept("", "sql source: the table whose rows are read (or sql_query)")
PASSWORD_ENV = Concept("", "sql source: the environment variable holding the database password "
                       "(never in a file or the URL)")

SHARED: dict[str, Concept] = {
    "rounds": ROUNDS, "local_steps": LOCAL_STEPS, "batch_size": BATCH_SIZE, "optimizer": OPTIMIZER,
    "lr": LR, "momentum": MOMENTUM, "seed": SEED, "dataset": DATASET, "label_column": LABEL_COLUMN,
    "partition": PARTITION, "model": MODEL, "hidden": HIDDEN, "topology": TOPOLOGY, "mixing": MIXING,
    "aggregator": AGGREGATOR, "compression": COMPRESSION, "delta": DP_DELTA, "mode": GOSSIP_MODE,
    "max_staleness": MAX_STALENESS, "staleness_alpha": STALENESS_ALPHA,
    "sql_query": SQL_QUERY, "sql_table": SQL_TABLE, "password_env": PASSWORD_ENV,
}
