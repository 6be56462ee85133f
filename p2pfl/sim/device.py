"""Which torch device a simulation runs on (`--device cpu|cuda|auto`): an execution detail.

The device is not a setting of the run (SimConfig, run keys): the same run gives the same key on
any device, so a sweep resumes across devices. Only the vectorized engine moves to a GPU; the
reference engine (one torch module per node) runs on the CPU, so `cuda` with it is refused and
`auto` picks the CPU for it.
"""

from __future__ import annotations

from p2pfl.errors import UserError

DEVICES = ("cpu", "cuda", "auto")


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU in this process."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str, engine: str = "vectorized", cuda: bool | None = None) -> str:
    """The device ("cpu" or "cuda") for `--device NAME` with `engine`; `cuda` says whether a GPU is
    there (default: this process's torch). One UserError line for a device that cannot be used."""
    if name not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if engine != "vectorized":
        if name == "cuda":
            raise UserError(f"--device cuda runs the vectorized engine only; the {engine} engine runs "
                            "on the CPU (use --device cpu or auto)")
        return "cpu"
    if name == "cpu":
        return "cpu"
    available = cuda_available() if cuda is None else cuda
    if name == "cuda" and not available:
        raise UserError("--device cuda: no CUDA GPU here (torch.cuda.is_available() is false); "
                        "use --device cpu or auto")
    return "cuda" if available else "cpu"
