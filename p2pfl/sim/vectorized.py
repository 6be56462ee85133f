"""Vectorized engine: all N parameter vectors in one [N, P] tensor.

Local training runs the model once for all nodes with torch.func (functional_call under vmap
over (parameters, buffers)) and takes one backward pass over the sum of the per-node losses:
nodes share no parameters, so the gradient of the sum is every node's own gradient. The
optimizers are written out over the stacked tensors with the same update rules as
torch.optim.SGD and Adam, so both engines agree. Mixing is one sparse matrix product.

Buffers (e.g. BatchNorm running statistics) are held per node, stacked [N, *shape]; a forward
pass in training mode updates each node's own rows. They stay local: mixing, compression and
robust aggregation see only the parameters. A model that cannot run under vmap (data-dependent
control flow, `.item()`, random ops such as dropout) is refused at start with a UserError that
points to the reference engine, which runs any nn.Module.

`device` ("cpu" or "cuda") is where the stacked state, a copy of the data and the model live;
`params`, `buffers` and `local_round` hand back CPU tensors and arrays (the same objects on the
CPU), so the runner, metrics and communication code never see the device.
"""

from __future__ import annotations

import copy
import functools
import weakref

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from p2pfl.errors import UserError
from p2pfl.gossip.mixing import to_torch
from p2pfl.learning.batches import Step
from p2pfl.learning.params import param_specs, unflatten
from p2pfl.learning.privacy import dp_gradients_stacked
from p2pfl.learning.trainer import OptimConfig
from p2pfl.sim import blocks, stacked
from p2pfl.sim.data import NodeData
from p2pfl.sim.options import DpSettings

CHUNK = 1024  # nodes per block in local training
DP_CHUNK = 32  # nodes per block of per-example gradients (DP-SGD holds [n, B, P])
MIX_ROWS = 4096  # rows of W per block of the mixing product


class VectorizedEngine:
    """Stacked parameters, buffers and optimizer state of N nodes.

    `name` (the model setting, e.g. "cnn") is what the error for a model that cannot be
    vmapped calls it; `device` is the torch device it computes on.
    """

    def __init__(self, model: nn.Module, data: NodeData, opt: OptimConfig, init: torch.Tensor,
                 dp: DpSettings | None = None, seed: int = 0, name: str | None = None,
                 device: str = "cpu"):
        self.device = torch.device(device)
        on_cpu = self.device.type == "cpu"
        self.model = model if on_cpu else copy.deepcopy(model).to(self.device)
        self.dp = dp
        self.generator = torch.Generator().manual_seed(seed * 7919 + 0xD9)  # CPU: same noise anywhere
        self.data = data.to(self.device)
        self.opt = opt
        self.specs = param_specs(model)
        n = data.nodes
        self.flat = init.detach().to(self.device).reshape(1, -1).repeat(n, 1).contiguous()
        self.buf = torch.zeros_like(self.flat)  # SGD momentum, or Adam first moment
        self.sq = torch.zeros_like(self.flat) if opt.name == "adam" else None
        self.count = torch.zeros(n, 1, dtype=torch.float64, device=self.device)  # steps taken per node
        # Each node's buffers, [N, *shape]; local state, never mixed.
        self.node_buffers = {k: b.detach().unsqueeze(0).repeat(n, *([1] * b.dim())).contiguous()
                             for k, b in self.model.named_buffers()}
        self._forward = vmap(self._one, in_dims=(0, 0, 0))
        self._layers = stacked.linear_layers(model)  # mlp, logreg: batched products, not vmap
        self._w_scipy: sp.csr_matrix | None = None
        self._w_rows: list[tuple[int, torch.Tensor]] = []  # W in blocks of MIX_ROWS rows, as torch
        self._spare: torch.Tensor | None = None  # the [N, P] buffer the next mix writes into
        self._view_cache: dict[tuple, dict[str, torch.Tensor]] = {}  # see _views
        self._handed_out: weakref.ref | None = None  # the last X `params` returned: never a spare
        if self._layers is None or dp is not None:  # the batched products need no vmap
            self._check_vmappable(name or type(model).__name__)

    def _one(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
             x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (params, buffers), (x,))

    def _check_vmappable(self, name: str) -> None:
        """One training step's computation on zeros, on copies of the state: a UserError naming
        the model and the reason when torch.func cannot vmap it."""
        b = 2
        x = torch.zeros(1, b, *self.data.input_shape, dtype=self.data.x.dtype, device=self.device)
        y = torch.zeros(1, b, dtype=self.data.y.dtype, device=self.device)
        buffers = {k: v[:1].clone() for k, v in self.node_buffers.items()}
        try:
            if self.dp is None:
                params = _leaves(self.flat[:1].clone(), self.specs)
                losses = self.node_losses(params, x, y, None, buffers)
                torch.autograd.grad(losses.sum(), list(params.values()))
            else:
                dp_gradients_stacked(self.model, self.flat[:1].detach().clone(), x, y, None,
                                     self.dp.clip, self.dp.noise, torch.Generator())
        except Exception as exc:  # whatever the model's code raises under vmap
            copy.deepcopy(self.model)(x[0])  # fails alike without vmap: not a vmap problem, raise that
            lines = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
            raise UserError(f"model {name!r} cannot run in the vectorized engine (torch.func.vmap "
                            f"failed: {why}); use --engine reference") from None

    def node_losses(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    valid: torch.Tensor | None,
                    buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Mean cross-entropy of each node on its own batch: [N]. `params`: name -> [N, *shape];
        `buffers` ([N, ...]) are the nodes' buffers (default: all of them); training-mode
        updates land in them."""
        buffers = self.node_buffers if buffers is None else buffers
        if self._layers is not None:
            logits = stacked.forward(self._layers, params, x)
        else:
            logits = self._forward(params, buffers, x)
        n, b, c = logits.shape
        if logits.numel() < stacked.MIDDLE_CLASSES:
            ce = F.cross_entropy(logits.reshape(n * b, c), y.reshape(n * b), reduction="none").view(n, b)
        else:
            # Classes in the middle ([n, classes, B]): log-softmax over a middle dimension is an
            # order of magnitude faster than over a last dimension of a few classes, with the same
            # values; the gradient is laid out [n, B, classes] again, so backward runs as before.
            if logits.requires_grad:
                logits.register_hook(torch.Tensor.contiguous)
            ce = F.cross_entropy(logits.transpose(1, 2).contiguous(), y, reduction="none")
        if valid is None:
            return ce.mean(dim=1)
        v = valid.to(ce.dtype)
        return (ce * v).sum(dim=1) / v.sum(dim=1).clamp_min(1.0)

    def local_round(self, steps: list[Step]) -> np.ndarray:
        """Local training of every node; returns each node's mean loss over its steps.

        Nodes are processed in blocks of CHUNK so activations stay in cache (one block of a
        10,000-node network runs about 3x faster than all nodes at once), on the workers of
        `blocks.workers_for_blocks` when there are some (DP-SGD: in order, one noise stream).
        """
        n = self.data.nodes
        total = torch.zeros(n, dtype=torch.float64, device=self.device)
        taken = torch.zeros(n, dtype=torch.float64, device=self.device)
        for step in steps:
            rows = self.data.offsets[:, None] + torch.from_numpy(step.index).to(self.device)
            valid = None if step.valid is None else torch.from_numpy(step.valid).to(self.device)
            block = functools.partial(self._train_block, rows=rows, valid=valid, total=total, taken=taken)
            starts = range(0, n, CHUNK)
            if self.dp is None and n > CHUNK:
                blocks.run(block, starts, kind="train")
            else:  # one block, or DP-SGD (one noise stream): here, in order, torch on one thread
                with blocks.one_thread():
                    for a in starts:
                        block(a)
        return (total / taken).cpu().numpy() if len(steps) else np.full(n, np.nan)

    def _train_block(self, a: int, rows: torch.Tensor, valid: torch.Tensor | None,
                     total: torch.Tensor, taken: torch.Tensor) -> None:
        """One step of nodes a .. a + CHUNK: their rows of `rows` [N, B] (and `valid`); their
        losses are added to `total` and the step counted in `taken`."""
        sl = slice(a, min(self.data.nodes, a + CHUNK))
        v = None if valid is None else valid[sl]
        x, y = self._batch(rows[sl])
        if self.dp is None and self._layers is not None:  # backward written out: no graph
            per_node, grad = stacked.loss_and_gradients(self._layers, self._views(self.flat, sl), x, y, v)
        elif self.dp is None:
            params = _leaves(self.flat[sl], self.specs)
            bufs = {k: b[sl] for k, b in self.node_buffers.items()}  # views: updates stay
            per_node = self.node_losses(params, x, y, v, bufs)
            grad = list(torch.autograd.grad(per_node.sum(), list(params.values())))
        else:
            grad, per_node = self._dp_gradients(self.flat[sl], x, y, v)
        active = None if v is None else v.any(dim=1)
        if active is not None and bool(active.all()):
            active = None  # every node steps: no state to keep (the same numbers, fewer ops)
        self._step(sl, grad, active)
        if active is None:
            total[sl] += per_node.detach().double()
            taken[sl] += 1.0
        else:
            mask = active.to(total.dtype)
            total[sl] += per_node.detach().double() * mask
            taken[sl] += mask

    def _views(self, flat: torch.Tensor, sl: slice) -> dict[str, torch.Tensor]:
        """unflatten(flat[sl]), kept for the few tensors the blocks read (X and its spare, the
        optimizer state): made anew each step they cost a small network's step a tenth."""
        key = (flat.data_ptr(), tuple(flat.shape), sl.start, sl.stop)
        views = self._view_cache.get(key)
        if views is None:
            if len(self._view_cache) > 4 * (1 + self.data.nodes // CHUNK) + 8:
                self._view_cache.clear()  # a safety net: two X buffers and the optimizer state
            views = self._view_cache[key] = unflatten(flat[sl], self.specs)
        return views

    def _batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [n, B, *input_shape] and labels [n, B] of the data rows [n, B] (index_select
        copies whole rows: several times faster than advanced indexing on a large table)."""
        flat = rows.reshape(-1)
        x = self.data.x.index_select(0, flat).view(*rows.shape, *self.data.input_shape)
        return x, self.data.y.index_select(0, flat).view(rows.shape)

    def _dp_gradients(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """DP-SGD gradients [n, P] and mean losses [n] of a block, DP_CHUNK nodes at a time."""
        assert self.dp is not None
        grads, losses = [], []
        for a in range(0, flat.shape[0], DP_CHUNK):
            sl = slice(a, a + DP_CHUNK)
            g, loss = dp_gradients_stacked(self.model, flat[sl], x[sl], y[sl],
                                           None if valid is None else valid[sl],
                                           self.dp.clip, self.dp.noise, self.generator)
            grads.append(g)
            losses.append(loss)
        return torch.cat(grads), torch.cat(losses)

    @torch.no_grad()
    def _step(self, sl: slice, grads: list[torch.Tensor] | torch.Tensor, active: torch.Tensor | None) -> None:
        """One optimizer step on the active nodes of a block (torch.optim's update rules).

        `grads`: one tensor per parameter ([n, *shape], any layout: a weight's gradient comes
        transposed, read in place), or all of them as one [n, P] tensor.
        """
        o = self.opt
        count = self.count[sl]
        n = count.shape[0]
        if isinstance(grads, torch.Tensor):
            parts = [(self.flat[sl], self.buf[sl], None if self.sq is None else self.sq[sl], grads)]
        else:
            sqs = [None] * len(grads) if self.sq is None else self._views(self.sq, sl).values()
            parts = list(zip(self._views(self.flat, sl).values(), self._views(self.buf, sl).values(), sqs,
                             grads, strict=True))
        count += 1.0 if active is None else active[:, None].double()
        if o.name == "adam":
            b1, b2 = o.betas
            steps = count.clamp_min(1.0)
            step_size = (o.lr / (1 - b1**steps)).to(self.flat.dtype)
            bc2_sqrt = torch.sqrt(1 - b2**steps).to(self.flat.dtype)
        for p, buf, sq, grad in parts:
            shape = (n,) + (1,) * (p.dim() - 1)  # per node, broadcast over the parameter
            keep = None if active is None else ~active.view(shape)
            old = None if keep is None else (p.clone(), buf.clone(), None if sq is None else sq.clone())
            if o.weight_decay:
                grad = grad.add(p, alpha=o.weight_decay)
            if o.name == "sgd":
                if o.momentum:
                    buf.mul_(o.momentum).add_(grad)
                    p.add_(buf, alpha=-o.lr)
                else:
                    p.add_(grad, alpha=-o.lr)
            else:
                buf.lerp_(grad, 1 - b1)
                sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                p.addcdiv_(buf * step_size.view(shape), (sq.sqrt() / bc2_sqrt.view(shape)).add_(o.eps),
                           value=-1.0)
            if old is not None:
                p.copy_(torch.where(keep, old[0], p))
                buf.copy_(torch.where(keep, old[1], buf))
                if sq is not None:
                    sq.copy_(torch.where(keep, old[2], sq))

    @torch.no_grad()
    def mix(self, w: sp.csr_matrix) -> None:
        """X <- W X as one sparse-dense product (a static topology's W is converted once).

        The product goes into the buffer the previous X used, not a fresh [N, P] tensor: at
        50,000 nodes a fresh one is 237 MB of pages to fault in every round.
        """
        if w is not self._w_scipy:
            starts = range(0, w.shape[0], MIX_ROWS)
            self._w_scipy, self._w_rows = w, [
                (a, to_torch(w[a : a + MIX_ROWS], self.flat.dtype).to(self.device)) for a in starts]
        out = self._spare if self._spare is not None else torch.empty_like(self.flat)
        x, rows = self.flat, dict(self._w_rows)

        def block(a: int) -> None:  # rows a .. a + MIX_ROWS: the values of torch.sparse.mm
            w_rows = rows[a]
            torch.addmm(out[a : a + w_rows.shape[0]], w_rows, x, beta=0, out=out[a : a + w_rows.shape[0]])

        blocks.run(block, list(rows), kind="mix")
        # The old X is the next spare unless `params` handed it out.
        handed_out = self._handed_out is not None and self._handed_out() is self.flat
        self._spare = None if handed_out else self.flat
        self.flat = out

    def params(self) -> torch.Tensor:
        """Parameters of all nodes as an [N, P] CPU tensor (the engine's own on the CPU)."""
        self._handed_out = weakref.ref(self.flat)
        return self.flat.cpu()

    def buffers(self) -> dict[str, torch.Tensor]:
        """Buffers of all nodes, name -> [N, *shape] (empty for a model without buffers), on the CPU."""
        return {k: b.cpu() for k, b in self.node_buffers.items()}

    def set_params(self, flat: torch.Tensor) -> None:
        """Replace the parameters of all nodes ([N, P]); optimizer state stays."""
        self.flat = flat.detach().to(self.device).contiguous()
        self._view_cache.clear()  # views of the X before would keep it alive


def _leaves(flat: torch.Tensor, specs: list[tuple[str, tuple[int, ...], torch.dtype]],
            ) -> dict[str, torch.Tensor]:
    """Each parameter of the [n, P] block as its own autograd leaf (views, no copy): gradients
    come per parameter, where a leaf [n, P] would scatter each back into a zeroed [n, P] first.
    The leaves alias the block's memory with a version counter of their own, so that another
    worker's update of its block does not look like a change of this block's saved tensors."""
    alias = torch.empty(0, dtype=flat.dtype, device=flat.device).set_(
        flat.untyped_storage(), flat.storage_offset(), flat.shape, flat.stride())
    return {k: v.requires_grad_(True) for k, v in unflatten(alias, specs).items()}
