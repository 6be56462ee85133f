"""Per-node speeds of a simulation (`--speeds`): how long one local round takes at each node.

Times are in simulated time units; one unit is one local round of a node at speed 1 (the median
node of `lognormal`, every node but one of `slowest`). Forms:

- `lognormal:SIGMA`: node i takes exp(SIGMA z_i), z_i ~ N(0, 1) drawn from the run's seed
  (median 1; SIGMA 0: all 1).
- `slowest:F`: node 0 takes F, every other node 1 (one node F times slower).
- `T0,T1,...`: one positive time per node, exactly --nodes of them.

None (the default) is every node at 1. A synchronous round lasts as long as the slowest node's
local round (`round_time`): everyone waits at the barrier.
"""

from __future__ import annotations

import math

import numpy as np

from p2pfl import spec
from p2pfl.errors import UserError

FORMS = "lognormal:SIGMA, slowest:F or a list of one time per node"


def _number(what: str, text: str) -> float:
    return spec.number(what, text.strip(), UserError)


def parse_speeds(spec: str | None, n: int, seed: int) -> np.ndarray:
    """The local-round time of each of the n nodes ([n] float64, all positive)."""
    if spec is None or not str(spec).strip():
        return np.ones(n)
    text = str(spec).strip()
    name, colon, rest = text.partition(":")
    if colon:
        value = _number(f"--speeds {name}", rest)
        if name == "lognormal":
            if not (value >= 0 and math.isfinite(value)):
                raise UserError(f"--speeds lognormal:SIGMA needs SIGMA >= 0, got {rest.strip()}")
            z = np.random.default_rng([seed, 0x5BEED]).standard_normal(n)
            return np.exp(value * z)
        if name == "slowest":
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"--speeds slowest:F needs a positive F, got {rest.strip()}")
            out = np.ones(n)
            out[0] = value
            return out
        raise UserError(f"--speeds {text!r}: unknown form {name!r} (use {FORMS})")
    parts = text.split(",")
    times = [_number("--speeds", p) for p in parts]
    if len(times) != n:
        raise UserError(f"--speeds lists {len(times)} times but there are {n} nodes (give one per "
                        f"node, or use lognormal:SIGMA or slowest:F)")
    bad = [p.strip() for p, t in zip(parts, times, strict=True) if not (t > 0 and math.isfinite(t))]
    if bad:
        raise UserError(f"--speeds times must be positive numbers, got {bad[0]}")
    return np.array(times, dtype=np.float64)


def round_time(speeds: np.ndarray) -> float:
    """How long one synchronous round lasts: the slowest node's local round."""
    return float(np.max(speeds))
