"""The model with its preprocessing inside one graph: raw columns in -> class probabilities out,
as torch, exported to ONNX (the legacy TorchScript exporter, opset 20, dynamic batch) and checked
with onnxruntime.

The input `x` is float32 [batch, columns], the raw columns in the plan's order: a numeric value,
a categorical column's category index as a float, NaN for a missing cell. The graph does what
`p2pfl.learning.preprocess.Preprocessor.transform` does (impute with the mean or the most frequent
category, standardise, one-hot in the plan's category order), then the model and a softmax. A
category index outside the plan's gives an all-zero one-hot, as in the Preprocessor.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from p2pfl.learning.preprocess import Preprocessor

OPSET = 20
INPUT, OUTPUT = "x", "probs"


class WithPreprocessing(nn.Module):
    """Raw rows [batch, columns] -> probabilities [batch, classes]."""

    def __init__(self, pre: Preprocessor, model: nn.Module, input_shape: tuple[int, ...]):
        super().__init__()
        self.model = model
        self.input_shape = tuple(input_shape)
        self.register_buffer("num_idx", torch.tensor(pre.numeric, dtype=torch.long))
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32))
        self.categorical = list(pre.categorical)
        self.modes = [float(m) for m in pre.mode]
        for k, j in enumerate(pre.categorical):
            n = len(pre.columns[j].categories)
            self.register_buffer(f"codes_{k}", torch.arange(n, dtype=torch.float32))
        perm = _order(pre)
        self.permute = perm != list(range(len(perm)))
        self.register_buffer("perm", torch.tensor(perm, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if len(self.num_idx):
            num = x.index_select(1, self.num_idx)
            num = torch.where(torch.isnan(num), self.mean, num)
            parts.append((num - self.mean) / self.std)
        for k, (j, mode) in enumerate(zip(self.categorical, self.modes, strict=True)):
            code = x[:, j:j + 1]
            code = torch.where(torch.isnan(code), torch.full_like(code, mode), code)
            parts.append((code == getattr(self, f"codes_{k}")).to(x.dtype))
        h = torch.cat(parts, dim=1)
        if self.permute:
            h = h.index_select(1, self.perm)
        if len(self.input_shape) > 1:
            h = h.reshape((-1, *self.input_shape))
        return torch.softmax(self.model(h), dim=1)


def _order(pre: Preprocessor) -> list[int]:
    """For each model input (the Preprocessor's order), its place in [numeric..., one-hot blocks...]."""
    place: dict[int, int] = {}
    at = 0
    for j in pre.numeric:
        place[int(pre.start[j])] = at
        at += 1
    for j in pre.categorical:
        for o in range(len(pre.columns[j].categories)):
            place[int(pre.start[j]) + o] = at
            at += 1
    return [place[p] for p in range(pre.n_features)]


def to_onnx(graph: WithPreprocessing, n_columns: int) -> bytes:
    """The ONNX model of `graph` (batch dimension dynamic)."""
    graph.eval()
    example = torch.zeros(2, n_columns, dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(graph, (example,), buf, dynamo=False, input_names=[INPUT],
                          output_names=[OUTPUT], opset_version=OPSET,
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    return buf.getvalue()


def run_onnx(model: bytes, x_raw: np.ndarray) -> np.ndarray:
    """Probabilities onnxruntime computes for raw rows (float64 or float32 [rows, columns])."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.ascontiguousarray(x_raw, dtype=np.float32)})[0]


def check_rows(pre: Preprocessor, x_raw: np.ndarray) -> np.ndarray:
    """The rows an export is checked on: `x_raw`, a row with every cell missing (every impute
    value) and, per categorical column, a row holding each category (every one-hot position)."""
    rows = [np.asarray(x_raw, dtype=np.float64).reshape(-1, len(pre.columns))]
    rows.append(np.full((1, len(pre.columns)), np.nan))
    base = pre.mean if len(pre.numeric) else np.zeros(0)
    for j in pre.categorical:
        k = len(pre.columns[j].categories)
        block = np.full((k, len(pre.columns)), np.nan)
        block[:, pre.numeric] = base
        block[:, j] = np.arange(k)
        rows.append(block)
    return np.concatenate(rows)


def raw_of(pre: Preprocessor, features: np.ndarray) -> np.ndarray:
    """Raw rows whose preprocessing gives `features` (float64 [rows, columns]): numeric values
    un-standardised, a one-hot block's category index. For data only held preprocessed (the
    simulator's Dataset)."""
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    out = np.empty((len(f), len(pre.columns)))
    for k, j in enumerate(pre.numeric):
        out[:, j] = f[:, pre.start[j]] * pre.std[k] + pre.mean[k]
    for j in pre.categorical:
        out[:, j] = f[:, pre.start[j]:pre.start[j + 1]].argmax(axis=1)
    return out
