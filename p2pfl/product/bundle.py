"""A model bundle on disk: writing one (weights, ONNX graph checked against torch, model card
with the digest of every file) and reading one back (digests first, then the model).

The card (model.json) is a JSON object; what this module needs of it:
`format`, `format_version`, `task` {label_column, classes}, `features` {columns (the plan's
form: name, type, categories), ignore, missing}, `preprocessing` {statistics (Statistics.to_dict),
preprocessor (Preprocessor.to_dict)}, `model` {kind, hidden, seed, input_shape, n_classes,
fingerprint}, `files` {name: sha256}. `export` adds the rest (plan, consortium, sites, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2pfl import __version__
from p2pfl.errors import UserError
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models import build_model
from p2pfl.learning.params import fingerprint
from p2pfl.learning.preprocess import Preprocessor, Statistics
from p2pfl.learning.schema import Column, FeatureSchema, parse_columns
from p2pfl.product import graph

FORMAT, VERSION = "p2pfl-model-bundle", 1
CARD, WEIGHTS, ONNX = "model.json", "model.safetensors", "model.onnx"
TOLERANCE = 1e-5  # the most an ONNX probability may differ from torch's at export
BATCH = 4096  # rows per forward pass


@dataclass
class Bundle:
    """A model with its preprocessing and card; `path` None until written."""

    card: dict[str, object]
    model: nn.Module
    preprocessor: Preprocessor
    path: Path | None = None

    @property
    def columns(self) -> tuple[Column, ...]:
        """The raw feature columns, in model-input order."""
        return self.preprocessor.columns

    @property
    def classes(self) -> list[str]:
        return list(self.card["task"]["classes"])  # type: ignore[index]

    @property
    def label_column(self) -> str:
        return str(self.card["task"]["label_column"])  # type: ignore[index]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.card["model"]["input_shape"])  # type: ignore[index]

    @property
    def schema(self) -> FeatureSchema:
        """The plan's columns, ignored columns and missing-value policy (no renames)."""
        f = self.card["features"]
        return FeatureSchema(columns=self.columns, ignore=tuple(f["ignore"]),  # type: ignore[index]
                             missing=str(f["missing"]), infer_categories=False)  # type: ignore[index]

    def predict_proba(self, x_raw: np.ndarray) -> np.ndarray:
        """float32 [rows, classes] of raw rows [rows, columns] (NaN: missing), with torch and the
        Preprocessor (not the ONNX graph), in batches of BATCH rows."""
        x = np.asarray(x_raw, dtype=np.float64)
        out = np.empty((len(x), len(self.classes)), dtype=np.float32)
        self.model.eval()
        with torch.no_grad():
            for at in range(0, len(x), BATCH):
                features = torch.from_numpy(self.preprocessor.transform(x[at:at + BATCH]))
                logits = self.model(features.reshape(-1, *self.input_shape))
                out[at:at + BATCH] = torch.softmax(logits, dim=1).numpy()
        return out


def make_card(model_kind: str, hidden: tuple[int, ...], seed: int, input_shape: tuple[int, ...],
              model: nn.Module, pre: Preprocessor, label_column: str, classes: list[str],
              ignore: tuple[str, ...], missing: str, **rest: object) -> dict[str, object]:
    """The card's parts every bundle has, then `rest` (plan, consortium, sites, ...)."""
    return {
        "format": FORMAT, "format_version": VERSION, "p2pfl_version": __version__,
        "task": {"label_column": label_column, "classes": list(classes)},
        "features": {"columns": pre.to_dict()["columns"], "ignore": list(ignore), "missing": missing},
        "preprocessing": {"statistics": pre.statistics.to_dict(), "preprocessor": pre.to_dict()},
        "model": {"kind": model_kind, "hidden": list(hidden), "seed": seed,
                  "input_shape": list(input_shape), "n_classes": len(classes),
                  "fingerprint": fingerprint(model)},
        **rest,
    }


def write_bundle(out: Path, bundle: Bundle, x_check: np.ndarray) -> Bundle:
    """Write `bundle` into the new (or empty) folder `out`, after checking its ONNX graph against
    torch on the raw rows `x_check` (plus every impute value and category); nothing is written
    if the two differ by more than TOLERANCE."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; give a new --out")
    pre, model = bundle.preprocessor, bundle.model.eval()
    onnx_model = graph.to_onnx(graph.WithPreprocessing(pre, model, bundle.input_shape), len(pre.columns))
    rows = graph.check_rows(pre, x_check)
    diff = float(np.abs(graph.run_onnx(onnx_model, rows) - bundle.predict_proba(rows)).max())
    if not diff <= TOLERANCE:
        raise UserError(f"the ONNX model differs from torch by {diff:.3g} (> {TOLERANCE:g}) on "
                        f"{len(rows)} rows; no bundle written")
    card = dict(bundle.card)
    card["onnx"] = {"input": graph.INPUT, "output": graph.OUTPUT, "opset": graph.OPSET,
                    "checked_rows": len(rows), "max_abs_difference": diff}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise UserError(f"{out}: cannot write the bundle ({exc.strerror or exc})") from None
    try:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": FORMAT})
        (staging / ONNX).write_bytes(onnx_model)
        card["files"] = {name: _sha256(staging / name) for name in (WEIGHTS, ONNX)}
        card = _finite(card)
        card["digest"] = card_digest(card)
        (staging / CARD).write_text(json.dumps(card, indent=1, allow_nan=False) + "\n")
        for path in staging.iterdir():
            os.chmod(path, 0o644)
        os.chmod(staging, 0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{out}: cannot write the bundle ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(card, model, pre, out)


def load_bundle(path: Path) -> Bundle:
    """The bundle in folder `path`; every file's digest is checked before it is read (a truncated
    or edited file: UserError naming it)."""
    card = read_card(path)
    files = card.get("files")
    if not isinstance(files, dict) or not {WEIGHTS, ONNX} <= set(files):
        raise UserError(f"{path / CARD}: no digests of {WEIGHTS} and {ONNX} (key 'files')")
    for name, want in files.items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            raise UserError(f"{file}: missing (model.json lists it)")
        if _sha256(file) != want:
            raise UserError(f"{file}: its SHA-256 does not match model.json (the file is truncated "
                            "or was edited)")
    try:
        columns = parse_columns(card["features"]["columns"])  # type: ignore[index]
        stats = Statistics.from_dict(card["preprocessing"]["statistics"], columns)  # type: ignore[index]
        pre = Preprocessor(columns, stats)
        m = card["model"]
        model = build_model(m["kind"], tuple(m["input_shape"]), int(m["n_classes"]),  # type: ignore[index]
                            tuple(m["hidden"]), int(m["seed"]))  # type: ignore[index]
        if len(card["task"]["classes"]) != int(m["n_classes"]):  # type: ignore[index]
            raise UserError(f"{path / CARD}: {len(card['task']['classes'])} classes for a model of "  # type: ignore[index]
                            f"{m['n_classes']}")  # type: ignore[index]
    except (KeyError, TypeError, ValueError, LearningSettingError) as exc:
        raise UserError(f"{path / CARD}: not a model card this p2pfl reads ({_one_line(exc)})") from None
    model.load_state_dict(_weights(path / WEIGHTS, model))
    return Bundle(card, model.eval(), pre, path)


def read_card(path: Path) -> dict[str, object]:
    """model.json of the bundle folder `path`, of this format and version."""
    file = path / CARD
    if not file.is_file():
        raise UserError(f"{path}: not a model bundle (no {CARD})")
    try:
        card = json.loads(file.read_text())
    except (ValueError, OSError) as exc:
        raise UserError(f"{file}: not readable JSON ({_one_line(exc)})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise UserError(f"{file}: not a p2pfl model card (format {FORMAT!r})")
    if card.get("format_version") != VERSION:
        raise UserError(f"{file}: format version {card.get('format_version')!r}; this p2pfl reads {VERSION}")
    try:
        same = card.get("digest") == card_digest(card)
    except ValueError:
        same = False
    if not same:
        raise UserError(f"{file}: its digest does not match its content (the model card was edited "
                        "or is damaged)")
    return card


def card_digest(card: Mapping[str, object]) -> str:
    """SHA-256 of the card's canonical JSON without its "digest" key: an edited card (other
    classes, other preprocessing) is refused like an edited weights file."""
    from p2pfl.protocol.consortium import canonical_json

    body = {k: v for k, v in card.items() if k != "digest"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _weights(file: Path, model: nn.Module) -> Mapping[str, torch.Tensor]:
    """The state dict in model.safetensors, checked against the model's names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{file}: not readable ({_one_line(exc)})") from None
    want = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    have = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    if want != have:
        odd = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        raise UserError(f"{file}: the weights do not fit the model in model.json (tensor {odd[0]!r})")
    return state


def _finite(value: object) -> object:
    """JSON-able `value` with NaN and infinities (a diverged loss) as null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
