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

Each compressor is one module of `p2pfl.gossip.compressions` (its parameters, encoding,
payload size and wire checks); this module is the one the rest of p2pfl imports: the parsed
`Compression`, the generic encode/decode, direct mixing and the CHOCO state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import scipy.sparse as sp
import torch

from p2pfl.gossip.compressions._base import Encoded, Member, Wire, WireError, finite
from p2pfl.gossip.compressions.float16 import FLOAT16_MAX, from_float16, to_float16
from p2pfl.gossip.compressions.int8 import INT8_LEVELS, ROUNDINGS, dequantize_int8, quantize_int8
from p2pfl.gossip.compressions.topk import densify, topk, topk_count
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import to_torch
from p2pfl.gossip.spec import key_values
from p2pfl.registry import Registry

COMPRESSIONS: Registry[Member] = Registry("compression", "p2pfl.gossip.compressions", GossipSettingError)

__all__ = [
    "COMPRESSIONS", "FLOAT16_MAX", "INT8_LEVELS", "ROUNDINGS", "ChocoNode", "ChocoStack", "Compression",
    "Encoded", "Wire", "WireError", "compress", "decode", "densify", "dequantize_int8", "encode",
    "encoded_bytes", "finite", "from_float16", "mix_compressed", "parse_compression", "quantize_int8",
    "to_float16", "topk", "topk_count",
]


@dataclass(frozen=True, init=False)
class Compression:
    """A validated compressor and its parameters. Build with `parse_compression`, or as
    `Compression(name, gamma=None, **params)`; the member's parameters read as attributes
    (`c.fraction`, `c.chunk`, ...)."""

    name: str
    params: tuple[tuple[str, object], ...]  # every parameter of the member but gamma, in its order
    gamma: float | None  # CHOCO consensus step; None = send the compressed model directly

    def __init__(self, name: str = "none", gamma: float | None = None, **params: object):
        member = COMPRESSIONS.get(name)
        member.check_keys([*params, *(["gamma"] if gamma is not None else [])])
        values = {p.key: params.get(p.key, p.default) for p in member.params if p.key != "gamma"}
        member.check(values)
        if gamma is None:
            gamma = member.default_gamma(values)
        member.check_gamma(gamma)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", tuple(values.items()))
        object.__setattr__(self, "gamma", gamma)

    def __getattr__(self, key: str) -> object:
        # only called for names that are not fields; read __dict__ (unset while unpickling)
        fields = self.__dict__
        for k, v in fields.get("params", ()):
            if k == key:
                return v
        raise AttributeError(f"compression {fields.get('name')} has no parameter {key!r}")

    @property
    def member(self) -> Member:
        """The registry member that implements this compressor."""
        return COMPRESSIONS.get(self.name)

    @property
    def choco(self) -> bool:
        """True when gossip runs through CHOCO (public copies x_hat, step gamma)."""
        return self.gamma is not None

    @property
    def is_identity(self) -> bool:
        """True when nothing is compressed: nodes send their model itself."""
        return self.member.identity

    def __str__(self) -> str:
        parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params]
        if self.gamma is not None:
            parts.append(f"gamma={self.gamma:g}")
        return self.name + (":" + ",".join(parts) if parts else "")


def parse_compression(spec: str) -> Compression:
    """'none', 'topk:fraction=0.01,gamma=0.5', 'int8[:chunk=256,rounding=stochastic,gamma=G]',
    'float16[:gamma=G]'. Top-k always uses CHOCO (gamma defaults to fraction)."""
    name, _, rest = str(spec).strip().partition(":")
    member = COMPRESSIONS.get(name.strip())
    params = key_values(spec, rest)
    member.check_keys(params)
    return Compression(member.name, **{k: member.parse_value(k, v) for k, v in params.items()})  # type: ignore[arg-type]


def encode(c: Compression, v: torch.Tensor, generator: torch.Generator | None = None) -> Encoded:
    """Compress v [P] or [N, P] (float32) into its wire form."""
    return c.member.encode(c, v.detach().float(), generator)


def decode(e: Encoded) -> torch.Tensor:
    """float32 vector(s) [..., P] that a receiver reconstructs from a payload."""
    return COMPRESSIONS.get(e.name).decode(e)


def compress(c: Compression, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Q(v): what the receivers of v [P] or [N, P] reconstruct, decode(encode(v))."""
    return decode(encode(c, v, generator))


def encoded_bytes(c: Compression, p: int) -> int:
    """Exact payload bytes of one compressed vector of p float32 values."""
    return c.member.encoded_bytes(c, p)


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
