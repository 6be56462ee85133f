"""Epidemic Learning: every round each node sends to s random peers.

EL-Oracle: a random s-regular directed graph (everyone also receives exactly s models), made
by laying a random permutation on a ring and sending to the next s positions. EL-Local: each
node samples its s targets independently and uniformly.
"""

import numpy as np

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topologies import TimeVaryingTopology, log2_ceil
from p2pfl.registry import Param


def check(p: dict[str, object], n: int) -> dict[str, object]:
    s = int(p["s"] if p["s"] is not None else max(1, log2_ceil(n)))  # type: ignore[call-overload]
    if n > 1 and not 1 <= s <= n - 1:
        raise GossipSettingError(f"epidemic: s must be between 1 and nodes-1 ({n - 1}), got {s}")
    if p["variant"] not in ("oracle", "local"):
        raise GossipSettingError(f"epidemic variant must be oracle or local, got {p['variant']!r}")
    return {**p, "s": min(s, max(n - 1, 0))}


def edges(n: int, p: dict[str, object], seed: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    s = int(p["s"])  # type: ignore[call-overload]
    if n <= 1 or s == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, t, 0xE1])
    if p["variant"] == "oracle":
        perm = rng.permutation(n)
        pos = np.arange(n)
        src = np.repeat(perm, s)
        dst = perm[(np.repeat(pos, s) + np.tile(np.arange(1, s + 1), n)) % n]
        return src.astype(np.int64), dst.astype(np.int64)
    # Local: s distinct targets per node, never itself: offsets in 1..n-1, rows redrawn until
    # their offsets are distinct.
    offs = rng.integers(1, n, size=(n, s))
    while True:
        srt = np.sort(offs, axis=1)
        bad = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
        if not len(bad):
            break
        offs[bad] = rng.integers(1, n, size=(len(bad), s))
    src = np.repeat(np.arange(n), s)
    dst = (src + offs.reshape(-1)) % n
    return src.astype(np.int64), dst.astype(np.int64)


COMPONENT = TimeVaryingTopology(
    "epidemic", "each node sends to s random peers every round", edges, check=check,
    params=(Param("s", None, "peers per round (default: ceil(log2 n))"),
            Param("variant", "oracle", "oracle (everyone receives s) or local (independent picks)")),
    paper="de Vos, Farhadkhani, Guerraoui, Kermarrec, Pires and Sharma, Epidemic learning: "
          "boosting decentralized learning with randomized communication, NeurIPS 2023",
)
