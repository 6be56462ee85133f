"""Compressed gossip: top-k sparsification, int8 quantisation and float16 casting of flat vectors.

Every function takes one vector [P] (a node, the daemon) or a stack [N, P] (all nodes, the
simulator) and works on the last dimension.

Two ways to gossip with a compressor Q:

- direct (int8, float16 without `gamma`): a node sends Q(x_i) instead of x_i; receivers decode
  and mix as usual, keeping their own model exact. Cheap and stateless, but the quantisation
  error never goes away. Robust aggregators combine with it through the `sent` argument of
  `robust.robust_mix`.
- CHOCO-Gossip (any compressor with `gamma`; top-k always): Koloskova, Stich and Jaggi,
  "Decentralized stochastic optimization and gossip algorithms with compressed
  communication", ICML 2019. Node i keeps a public copy x_hat_i that all its neighbours also
  hold. Each round, after local training:
      q_i = Q(x_i - x_hat_i);  send q_i;  x_hat_j += q_j for itself and every neighbour j;
      x_i += gamma * sum_j w_ij (x_hat_j - x_hat_i).
  x - x_hat is the error feedback: what was not sent yet is sent later, so even 1% top-k
  reaches exact consensus. A too large gamma diverges (top-k 10%: gamma 0.5 on a 16-node
  ring, 0.3 on a 64-node 6-regular graph); the default for top-k, gamma = fraction, was
  stable in those trials and at 1% on the ring, but slow: tune it (the paper does).
  `ChocoStack` holds the state of N nodes for the simulator (one x_hat row per node, since
  every holder of x_hat_j applies the same q_j), `ChocoNode` that of one daemon node.

int8 is symmetric with one float32 scale per chunk of `chunk` values (0: one per vector):
scale = max|v| / 127 over the chunk, q = round(v / scale) in [-127, 127]. Rounding is to
nearest (deterministic; error at most scale / 2) or stochastic (floor(v / scale + u),
u ~ U[0, 1) from a seeded generator; unbiased, error below scale). float16 saturates at
+-65504 instead of overflowing to inf. Payload sizes (`encoded_bytes`): top-k sends k int32
indices and k float32 values, int8 one byte per value plus 4 per scale, float16 two bytes per
value, none four.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import scipy.sparse as sp
import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import to_torch
from p2pfl.gossip.spec import is_number, key_values, number

COMPRESSIONS = ("none", "topk", "int8", "float16")
ROUNDINGS = ("nearest", "stochastic")
FLOAT16_MAX = 65504.0
INT8_LEVELS = 127

_KEYS = {
    "none": (), "topk": ("fraction", "gamma"), "int8": ("chunk", "rounding", "gamma"), "float16": ("gamma",),
}


@dataclass(frozen=True)
class Compression:
    """A validated compressor and its parameters. Build with `parse_compression`."""

    name: str = "none"
    fraction: float = 0.01  # topk: share of the values sent each round
    chunk: int = 256  # int8: values per scale; 0 = one scale per vector
    rounding: str = "nearest"  # int8: nearest or stochastic
    gamma: float | None = None  # CHOCO consensus step; None = send the compressed model directly

    def __post_init__(self) -> None:
        if self.name not in COMPRESSIONS:
            raise GossipSettingError(f"unknown compression {self.name!r}; choose one of "
                                     f"{', '.join(COMPRESSIONS)}")
        if not (is_number(self.fraction) and 0 < self.fraction <= 1):
            raise GossipSettingError(f"topk: fraction must be in (0, 1], got {self.fraction!r}")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 0:
            raise GossipSettingError(f"int8: chunk must be a non-negative integer (0: one scale), "
                                     f"got {self.chunk!r}")
        if self.rounding not in ROUNDINGS:
            raise GossipSettingError(f"int8: rounding must be nearest or stochastic, got {self.rounding!r}")
        if self.name == "topk" and self.gamma is None:
            object.__setattr__(self, "gamma", float(self.fraction))
        if self.gamma is not None and not (is_number(self.gamma) and 0 < self.gamma <= 1):
            raise GossipSettingError(f"{self.name}: gamma must be in (0, 1], got {self.gamma!r}")
        if self.name == "none" and self.gamma is not None:
            raise GossipSettingError("compression none does not take gamma")

    @property
    def choco(self) -> bool:
        """True when gossip runs through CHOCO (public copies x_hat, step gamma)."""
        return self.gamma is not None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.name == "topk":
            parts.append(f"fraction={self.fraction:g}")
        if self.name == "int8":
            parts.append(f"chunk={self.chunk}")
            parts.append(f"rounding={self.rounding}")
        if self.gamma is not None:
            parts.append(f"gamma={self.gamma:g}")
        return self.name + (":" + ",".join(parts) if parts else "")


def parse_compression(spec: str) -> Compression:
    """'none', 'topk:fraction=0.01,gamma=0.5', 'int8[:chunk=256,rounding=stochastic,gamma=G]',
    'float16[:gamma=G]'. Top-k always uses CHOCO (gamma defaults to fraction)."""
    name, _, rest = str(spec).strip().partition(":")
    name = name.strip()
    if name not in COMPRESSIONS:
        raise GossipSettingError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    params = key_values(spec, rest)
    unknown = sorted(set(params) - set(_KEYS[name]))
    if unknown:
        raise GossipSettingError(f"compression {name} does not take {', '.join(unknown)} "
                        f"(takes: {', '.join(_KEYS[name]) or 'none'})")
    kwargs: dict[str, object] = {}
    for key in ("fraction", "gamma"):
        if key in params:
            kwargs[key] = number(f"{name}: {key}", params[key])
    if "chunk" in params:
        try:
            kwargs["chunk"] = int(params["chunk"])
        except ValueError:
            raise GossipSettingError(f"int8: chunk must be a non-negative integer (0: one scale), "
                            f"got {params['chunk']!r}") from None
    if "rounding" in params:
        kwargs["rounding"] = params["rounding"]
    return Compression(name, **kwargs)  # type: ignore[arg-type]


# ---- top-k -------------------------------------------------------------------------------------


def topk_count(p: int, fraction: float) -> int:
    """k = ceil(fraction * p), at least 1 and at most p."""
    return max(1, min(p, math.ceil(round(fraction * p, 6))))


def topk(v: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (int64, ascending) and values of the k largest-magnitude entries of each row."""
    k = topk_count(v.shape[-1], fraction)
    index = torch.topk(v.abs(), k, dim=-1, sorted=False).indices.sort(dim=-1).values
    return index, torch.gather(v, -1, index)


def densify(index: torch.Tensor, values: torch.Tensor, p: int) -> torch.Tensor:
    """The dense vector(s) [..., p] holding `values` at `index` and zeros elsewhere."""
    out = torch.zeros(*values.shape[:-1], p, dtype=values.dtype)
    return out.scatter_(-1, index.long(), values)


# ---- int8 and float16 --------------------------------------------------------------------------


def quantize_int8(
    v: torch.Tensor, chunk: int = 256, rounding: str = "nearest", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes [..., P] and float32 scales [..., chunks] (max|v| / 127 per chunk).

    Stochastic rounding needs a generator (seeded, so runs repeat).
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be nearest or stochastic, got {rounding!r}")
    p = v.shape[-1]
    blocks, _ = _blocks(v.float(), chunk)
    scale = blocks.abs().amax(dim=-1) / INT8_LEVELS
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    y = blocks / safe[..., None]
    if rounding == "nearest":
        y = torch.round(y)
    else:
        if generator is None:
            raise ValueError("stochastic rounding needs a torch.Generator")
        y = torch.floor(y + torch.rand(y.shape, generator=generator))
    q = y.clamp_(-INT8_LEVELS, INT8_LEVELS).to(torch.int8).reshape(*v.shape[:-1], -1)[..., :p]
    return q, scale


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """float32 values [..., P] of int8 codes and their per-chunk scales."""
    p = q.shape[-1]
    blocks, _ = _blocks(q.float(), chunk)
    return (blocks * scales[..., None]).reshape(*q.shape[:-1], -1)[..., :p]


def to_float16(v: torch.Tensor) -> torch.Tensor:
    """float16 copy, saturating at +-65504 instead of overflowing to inf."""
    return v.clamp(-FLOAT16_MAX, FLOAT16_MAX).half()


def from_float16(h: torch.Tensor) -> torch.Tensor:
    """float32 copy of float16 values (exact)."""
    return h.float()


def _blocks(v: torch.Tensor, chunk: int) -> tuple[torch.Tensor, int]:
    """v [..., P] zero-padded and viewed as [..., chunks, width]."""
    p = v.shape[-1]
    width = p if chunk == 0 or chunk >= p else chunk
    width = max(width, 1)
    pad = (-p) % width
    if pad:
        v = torch.nn.functional.pad(v, (0, pad))
    return v.reshape(*v.shape[:-1], -1, width), width


# ---- payloads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A compressed vector [P] or stack of vectors [N, P] as it goes on the wire.

    values: float32 (none, topk), int8 or float16; indices: int32 (topk); scales: float32 (int8).
    """

    name: str
    size: int
    values: torch.Tensor
    indices: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    chunk: int = 0

    def nbytes(self) -> int:
        """Payload bytes of all rows together (values + indices + scales)."""
        tensors = [t for t in (self.values, self.indices, self.scales) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


def encode(c: Compression, v: torch.Tensor, generator: torch.Generator | None = None) -> Encoded:
    """Compress v [P] or [N, P] (float32) into its wire form."""
    v = v.detach().float()
    p = v.shape[-1]
    if c.name == "topk":
        index, values = topk(v, c.fraction)
        return Encoded("topk", p, values, indices=index.to(torch.int32))
    if c.name == "int8":
        q, scales = quantize_int8(v, c.chunk, c.rounding, generator)
        return Encoded("int8", p, q, scales=scales, chunk=c.chunk)
    if c.name == "float16":
        return Encoded("float16", p, to_float16(v))
    return Encoded("none", p, v.clone())


def decode(e: Encoded) -> torch.Tensor:
    """float32 vector(s) [..., P] that a receiver reconstructs from a payload."""
    if e.name == "topk":
        if e.indices is None:
            raise ValueError("a topk payload needs indices")
        return densify(e.indices, e.values.float(), e.size)
    if e.name == "int8":
        if e.scales is None:
            raise ValueError("an int8 payload needs scales")
        return dequantize_int8(e.values, e.scales, e.chunk)
    return e.values.float()


def compress(c: Compression, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Q(v): what the receivers of v [P] or [N, P] reconstruct, decode(encode(v))."""
    if c.name == "none":
        return v.detach().float().clone()
    return decode(encode(c, v, generator))


def encoded_bytes(c: Compression, p: int) -> int:
    """Exact payload bytes of one compressed vector of p float32 values."""
    if c.name == "topk":
        return 8 * topk_count(p, c.fraction)  # int32 index + float32 value
    if c.name == "int8":
        width = p if c.chunk == 0 or c.chunk >= p else c.chunk
        return p + 4 * (math.ceil(p / width) if p else 0)
    if c.name == "float16":
        return 2 * p
    return 4 * p


def mix_compressed(
    x: torch.Tensor, w: sp.spmatrix, c: Compression, generator: torch.Generator | None = None,
    sent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Direct compressed gossip of all nodes: x_i <- w_ii x_i + sum_{j != i} w_ij Q(s_j).

    `sent` [N, P] (default x) is what each node sends: a simulator puts attacks there.
    """
    if c.choco:
        raise ValueError(f"compression {c} runs through CHOCO: use ChocoStack")
    qx = compress(c, x if sent is None else sent, generator)
    diag = torch.from_numpy(sp.csr_matrix(w).diagonal()).to(x.dtype)[:, None]
    return torch.sparse.mm(to_torch(w, x.dtype), qx) + diag * (x - qx)


# ---- CHOCO-Gossip ------------------------------------------------------------------------------


class ChocoStack:
    """CHOCO-Gossip state of N nodes (simulator): the public copies x_hat [N, P].

    Start x_hat at zeros, or at the common initial model when every node starts from it (all
    holders then know it without communication and the first rounds send no stale mass).
    """

    def __init__(self, c: Compression, x_hat: torch.Tensor):
        if not c.choco:
            raise ValueError(f"compression {c} has no gamma: it is direct, not CHOCO")
        self.c = c
        self.x_hat = x_hat.detach().float().clone()

    def exchange(
        self, x: torch.Tensor, generator: torch.Generator | None = None, online: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every node compresses x_i - x_hat_i and applies it to its public copy; returns q [N, P].

        `online` [N] bool: an offline node publishes nothing this round (its q is 0).
        """
        q = compress(self.c, x - self.x_hat, generator)
        if online is not None:
            q[~online] = 0.0
        self.x_hat += q
        return q

    def gossip(self, x: torch.Tensor, w: sp.spmatrix | torch.Tensor) -> torch.Tensor:
        """x + gamma (W x_hat - x_hat): the consensus step on the public copies."""
        wt = to_torch(w, self.x_hat.dtype) if sp.issparse(w) else w
        mixed = torch.sparse.mm(wt, self.x_hat) if wt.layout != torch.strided else wt @ self.x_hat
        return x + float(self.c.gamma) * (mixed - self.x_hat)  # type: ignore[arg-type]

    def step(
        self, x: torch.Tensor, w: sp.spmatrix | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One CHOCO round after local training: exchange, then gossip. Returns the new x."""
        self.exchange(x, generator)
        return self.gossip(x, w)


class ChocoNode:
    """CHOCO-Gossip state of one node (daemon): its own public copy and one per neighbour.

    Copies are keyed by the sender's name or peer ID and start at `x_hat` (zeros or the common
    initial model, the same value every node uses). A copy stays right only if every q of its
    sender arrives: after a missed message the driver must resend the full x_hat and call
    `reset`.
    """

    def __init__(self, c: Compression, x_hat: torch.Tensor):
        if not c.choco:
            raise ValueError(f"compression {c} has no gamma: it is direct, not CHOCO")
        self.c = c
        self.start = x_hat.detach().float().clone()
        self.x_hat = self.start.clone()
        self.copies: dict[str, torch.Tensor] = {}

    def message(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Encoded:
        """Compress x - x_hat, apply it to the own public copy, return the payload to send."""
        e = encode(self.c, x - self.x_hat, generator)
        self.x_hat += decode(e)
        return e

    def receive(self, sender: str, e: Encoded) -> None:
        """Apply a neighbour's q to its copy."""
        q = decode(e)
        if q.shape != self.start.shape:
            raise ValueError(f"payload of {sender} has shape {tuple(q.shape)}, "
                             f"expected {tuple(self.start.shape)}")
        self.copies[sender] = self.copies.get(sender, self.start) + q

    def reset(self, sender: str, x_hat: torch.Tensor) -> None:
        """Replace a neighbour's copy by its full public x_hat (after a missed message)."""
        self.copies[sender] = x_hat.detach().float().clone()

    def mix(self, x: torch.Tensor, weights: Mapping[str, float]) -> torch.Tensor:
        """x + gamma sum_j w_j (x_hat_j - x_hat): `weights` are the W_ij of the neighbours heard.

        A neighbour left out adds nothing (its weight stays with the node itself).
        """
        out = x.detach().float().clone()
        for sender, wij in weights.items():
            hat = self.copies.get(sender, self.start)
            out.add_(hat - self.x_hat, alpha=float(self.c.gamma) * float(wij))  # type: ignore[arg-type]
        return out
