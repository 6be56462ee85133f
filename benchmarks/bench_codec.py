"""Update codec speed on a 100 MB state dict, against torch.save/torch.load and a memory copy.

    python benchmarks/bench_codec.py [--mb 100] [--reps 5]

encode = build + hash + sign (`codec.encode`; `encode_parts` skips the copy into one
buffer); decode = check + verify signature and payload
digest + zero-copy tensors (`codec.decode` + `codec.state_dict`). The baselines are
torch.save / torch.load(weights_only=True) through a BytesIO, and a plain copy of the same
number of bytes into new memory (bytearray) or into memory already touched (the physical limit).
Best of `--reps` runs each; ratios > 1 mean faster than the baseline.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.learning.params import fingerprint
from p2pfl.protocol.codec import decode, encode, encode_parts, state_dict
from p2pfl.protocol.consortium import consortium_of


def best_seconds(fn: Callable[[], object], reps: int) -> float:
    """The fastest of `reps` timed calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_state_dict(total_mb: int) -> dict[str, torch.Tensor]:
    """Float32 tensors of mixed shapes, about `total_mb` MB (10^6 bytes) in all."""
    g = torch.Generator().manual_seed(0)
    shapes = [(4096, 4096), (4096,), (2048, 1024), (1024,), (1000, 10), (10,)]
    fixed = sum(int(np.prod(s)) for s in shapes) * 4
    rows = max(1, (total_mb * 10**6 - fixed) // (4 * 2048))
    shapes.insert(2, (rows, 2048))
    return {f"layer{i}": torch.randn(s, generator=g) for i, s in enumerate(shapes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="The given buffer is not writable")

    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    sd = make_state_dict(args.mb)
    nbytes = sum(t.nbytes for t in sd.values())
    fp = fingerprint([(n, tuple(t.shape), t.dtype) for n, t in sd.items()])
    consortium = consortium_of({"bench": {"mb": args.mb}})

    def do_encode() -> memoryview:
        return encode(key, consortium=consortium, round=1, fingerprint=fp, num_samples=1000,
                      weight=1.0, tensors=sd)

    def do_encode_parts() -> list[memoryview]:
        return encode_parts(key, consortium=consortium, round=1, fingerprint=fp, num_samples=1000,
                            weight=1.0, tensors=sd)

    def do_torch_save() -> bytes:
        buf = io.BytesIO()
        torch.save(sd, buf)
        return buf.getvalue()

    message = bytes(do_encode())
    saved = do_torch_save()
    decoded = state_dict(decode(message))
    assert all(torch.equal(decoded[n], t) for n, t in sd.items())
    target = np.empty(len(message), dtype=np.uint8)
    target[:] = 0

    def run_all() -> dict[str, float]:
        return {
            "memory copy, new buffer (bytearray)": best_seconds(
                lambda: bytearray(message), args.reps
            ),
            "memory copy, touched buffer": best_seconds(
                lambda: np.copyto(target, np.frombuffer(message, np.uint8)), args.reps
            ),
            "torch.save -> BytesIO": best_seconds(do_torch_save, args.reps),
            "torch.load(weights_only=True)": best_seconds(
                lambda: torch.load(io.BytesIO(saved), weights_only=True), args.reps
            ),
            "codec encode + sign": best_seconds(do_encode, args.reps),
            "codec encode_parts + sign (no copy)": best_seconds(do_encode_parts, args.reps),
            "codec verify + decode": best_seconds(lambda: state_dict(decode(message)), args.reps),
        }

    cpus = sorted(os.sched_getaffinity(0))
    print(
        f"bench_codec: {nbytes / 1e6:.1f} MB state dict ({len(sd)} float32 tensors), "
        f"message {len(message) / 1e6:.1f} MB, torch.save {len(saved) / 1e6:.1f} MB; "
        f"torch threads {torch.get_num_threads()}, best of {args.reps}"
    )
    report(f"all {len(cpus)} CPUs", run_all(), nbytes)
    if len(cpus) > 1:
        os.sched_setaffinity(0, cpus[:1])
        try:
            report("pinned to 1 CPU (as when training uses the other cores)", run_all(), nbytes)
        finally:
            os.sched_setaffinity(0, cpus)


def report(title: str, seconds: dict[str, float], nbytes: int) -> None:
    """Print one block of timings and the ratios the codec is judged by."""
    mbps = {name: nbytes / 1e6 / s for name, s in seconds.items()}
    print(f"{title}:")
    for name, s in seconds.items():
        print(f"  {name:<40} {s * 1e3:8.1f} ms {mbps[name]:8.0f} MB/s")
    copy = mbps["memory copy, new buffer (bytearray)"]
    touched = mbps["memory copy, touched buffer"]
    enc, dec = mbps["codec encode + sign"], mbps["codec verify + decode"]
    ratios = [
        ("encode + sign / torch.save", enc / mbps["torch.save -> BytesIO"], "  (target >= 1)"),
        (
            "encode_parts + sign / torch.save",
            mbps["codec encode_parts + sign (no copy)"] / mbps["torch.save -> BytesIO"],
            "",
        ),
        ("verify + decode / torch.load", dec / mbps["torch.load(weights_only=True)"], ""),
        ("verify + decode / memory copy (new)", dec / copy, "  (target >= 0.5)"),
        ("verify + decode / memory copy (touched)", dec / touched, ""),
        ("encode + sign / memory copy (new)", enc / copy, ""),
    ]
    for name, ratio, note in ratios:
        print(f"  {name:<40} {ratio:5.2f}x{note}")


if __name__ == "__main__":
    main()
