"""`gossip.mode = "overlap"`: synchronous rounds whose exchange overlaps the local training.

D-PSGD as Lian, Zhang, Zhang, Hsieh, Zhang and Liu (NeurIPS 2017) write it: each node computes
its local step on x_i(t) while it sends x_i(t) to its neighbours and receives theirs, then

    x_i(t+1) = sum_j W_ij x_j(t) + (y_i(t) - x_i(t))    y_i(t): x_i(t) after the local steps

(with one SGD step, y_i(t) - x_i(t) = -lr g_i(x_i(t)): their update rule). `sync` mixes after
training instead, x_i(t+1) = sum_j W_ij y_j(t), so a node that has trained waits for its
neighbours to finish training; with `overlap` it waits only for them to *start* the round, and
the models it needs usually arrived while it trained. With a doubly stochastic W the network
average follows the same rule in both modes (it moves by the mean of the local changes); each
node's own model carries its last local change unmixed.
The same rule runs in the simulator (`p2pfl.sim.runner`) and the daemon (`RoundMachine`).
"""

from __future__ import annotations

from typing import TypeVar

import torch

T = TypeVar("T", torch.Tensor, dict[str, torch.Tensor])


def with_local_change(mixed: T, start: T, trained: T) -> T:
    """mixed + (trained - start): stacked [N, P] tensors, or one node's state dicts, where a
    tensor that is not floating point (a step counter) takes the trained value."""
    if isinstance(mixed, torch.Tensor):
        return mixed + (trained - start)
    return {k: v + (trained[k] - start[k]) if v.is_floating_point() else trained[k] for k, v in mixed.items()}
