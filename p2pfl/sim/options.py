"""The robustness settings of a simulation (issue 6), parsed and checked before anything runs.

`--aggregator`, `--compression`, `--dp noise=SIGMA,clip=C[,delta=D]`, `--dropout P`,
`--stragglers P`, `--message-loss P` and `--attack NAME:FRACTION` become one `Robustness`
object; every bad value is one UserError line. `check_against_topology` does the checks that
need the graph (trim larger than the neighbourhood, compression that cannot run with faults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from p2pfl.errors import UserError
from p2pfl.gossip.compression import Compression, parse_compression
from p2pfl.gossip.robust import Aggregator, parse_aggregator
from p2pfl.gossip.spec import key_values, number
from p2pfl.gossip.topology import Topology
from p2pfl.settings.fields import DP_DELTA
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.attacks import ATTACKS

DEFAULT_DELTA: float = DP_DELTA.default  # type: ignore[assignment]


@dataclass(frozen=True)
class DpSettings:
    """DP-SGD in local training: noise multiplier, per-example clipping norm, target delta."""

    noise: float
    clip: float
    delta: float = DEFAULT_DELTA


@dataclass(frozen=True)
class Attack:
    """Byzantine members: the attack they run and the fraction of nodes that are malicious."""

    name: str
    fraction: float


@dataclass(frozen=True)
class Robustness:
    """Every robustness option of one run, validated."""

    aggregator: Aggregator
    compression: Compression
    dp: DpSettings | None
    dropout: float
    stragglers: float
    message_loss: float
    attack: Attack | None

    @property
    def plain(self) -> bool:
        """True when the run is plain D-PSGD (the W-mix of every model, nothing lost or attacked)."""
        return (self.aggregator.is_linear and self.compression.name == "none" and not self.faulty
                and self.attack is None)

    @property
    def faulty(self) -> bool:
        """True when some node or message can fail in a round."""
        return self.dropout > 0 or self.stragglers > 0 or self.message_loss > 0


def parse_dp(spec: str) -> DpSettings:
    """'noise=1.1,clip=1.0[,delta=1e-5]'; noise must be positive (an epsilon needs noise)."""
    params = key_values(spec, spec)
    unknown = sorted(set(params) - {"noise", "clip", "delta"})
    if unknown:
        raise UserError(f"--dp does not take {', '.join(unknown)} (takes: noise, clip, delta)")
    missing = [k for k in ("noise", "clip") if k not in params]
    if missing:
        raise UserError(f"--dp needs {' and '.join(missing)}, e.g. --dp noise=1.0,clip=1.0")
    noise = number("--dp noise", params["noise"])
    clip = number("--dp clip", params["clip"])
    delta = number("--dp delta", params["delta"]) if "delta" in params else DEFAULT_DELTA
    if not (noise > 0 and math.isfinite(noise)):
        raise UserError(f"--dp noise must be positive: an epsilon target with no noise cannot be met "
                        f"(got {params['noise']})")
    if not (clip > 0 and math.isfinite(clip)):
        raise UserError(f"--dp clip must be a positive number, got {params['clip']}")
    if not 0 < delta < 1:
        raise UserError(f"--dp delta must be in (0, 1), got {params['delta']}")
    return DpSettings(noise, clip, delta)


def parse_attack(spec: str) -> Attack:
    """'NAME:FRACTION' of a registered attack, e.g. 'sign_flip:0.2' ('none' means no attack)."""
    name, colon, rest = spec.strip().partition(":")
    ATTACKS.get(name)  # a UserError listing the attacks when there is none of this name
    if not colon or not rest.strip():
        raise UserError(f"--attack needs NAME:FRACTION, e.g. {name}:0.2")
    fraction = number(f"--attack {name} fraction", rest)
    if not 0 <= fraction < 1:
        raise UserError(f"--attack fraction must be in [0, 1), got {rest.strip()}")
    return Attack(name, fraction)


def parse_robustness(cfg: SimConfig) -> Robustness:
    """All robustness options of `cfg`, checked (no data or graph needed)."""
    for key in ("dropout", "stragglers", "message_loss"):
        value = getattr(cfg, key)
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise UserError(f"--{key.replace('_', '-')} must be a probability in [0, 1), got {value!r}")
    return Robustness(
        aggregator=parse_aggregator(cfg.aggregator),
        compression=parse_compression(cfg.compression),
        dp=None if cfg.dp in (None, "none") else parse_dp(str(cfg.dp)),
        dropout=float(cfg.dropout),
        stragglers=float(cfg.stragglers),
        message_loss=float(cfg.message_loss),
        attack=None if cfg.attack in (None, "none") else parse_attack(str(cfg.attack)),
    )


def check_against_topology(opts: Robustness, topo: Topology) -> None:
    """Checks that need the graph: enough neighbours for the trim, and supported combinations."""
    agg, comp = opts.aggregator, opts.compression
    lo, _, _ = topo.degree_stats()
    if agg.min_models() > lo + 1:
        raise UserError(f"aggregator {agg} needs at least {agg.min_models()} models per neighbourhood "
                        f"(degree >= {agg.min_models() - 1}), but topology {topo.name} has a node of "
                        f"degree {lo}")
    if comp.choco and not agg.is_linear:
        raise UserError(f"compression {comp} runs through CHOCO-Gossip, which mixes public copies with "
                        f"W; it cannot be combined with aggregator {agg} (use int8 or float16)")
    if comp.choco and (opts.stragglers > 0 or opts.message_loss > 0):
        raise UserError(f"compression {comp} (CHOCO) needs every message to arrive; the simulator "
                        "does not model its resynchronisation after --stragglers or --message-loss")
