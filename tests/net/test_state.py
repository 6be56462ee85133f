"""The node's state folder: checkpoint digest and fallback, metrics repair, failed writes, lock.

Unit tests on real files, no node processes (only tiny lock holders in subprocesses).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from p2pfl.errors import InUseError, StateWriteError, UserError
from p2pfl.net import checkpoint
from p2pfl.net.checkpoint import CHECKPOINT, METRICS, PREVIOUS, SET_ASIDE
from p2pfl.net.state_lock import StateLock


def _node(fill: float | None = None) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A small model with momentum state; parameters set to `fill` if given."""
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    if fill is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(fill)
    return model, opt


def _row(r: int, **extra: object) -> dict[str, object]:
    return {"round": r, "train_loss": 1.0 / (r + 1), "val_accuracy": 0.5, **extra}


def _save(state: Path, r: int) -> nn.Module:
    """The checkpoint of round r (parameters all equal to r), ending round r - 1."""
    model, opt = _node(float(r))
    checkpoint.save(state, r, model, opt, _row(r - 1) if r else None)
    return model


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _flip_weight_bytes(path: Path, model: nn.Module) -> None:
    """Overwrite bytes inside the stored data of the first weight (not the zip structure)."""
    raw = bytearray(path.read_bytes())
    weight = model[0].weight.detach().contiguous().numpy().tobytes()
    at = raw.find(weight)
    assert at > 0 and raw.find(weight, at + 1) < 0, "the weight's bytes are stored once"
    raw[at + 8: at + 16] = b"\x7f" * 8
    path.write_bytes(bytes(raw))


def _rounds(state: Path) -> list[int]:
    return [r["round"] for r in checkpoint.read_metrics(state)]


def _write_metrics(state: Path, rows: list[dict[str, object]], tail: bytes = b"") -> None:
    (state / METRICS).write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + tail)


# -- the checkpoint file ----------------------------------------------------------------------


def test_round_trip_restores_everything_and_stays_plain_torch(tmp_path):
    model, opt = _node(0.25)
    checkpoint.save(tmp_path, 3, model, opt, _row(2))
    fresh, fresh_opt = _node()
    restored = checkpoint.load(tmp_path, fresh, fresh_opt)
    assert (restored.round, restored.path, restored.warnings) == (3, tmp_path / CHECKPOINT, [])
    assert restored.metrics_row == _row(2)
    assert all(torch.equal(a, b) for a, b in zip(_params(fresh), _params(model), strict=True))
    buf = fresh_opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])
    plain = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert torch.equal(plain["model"]["0.weight"], model[0].weight)
    assert plain["digest"] == checkpoint.digest(plain) and len(plain["digest"]) == 64


def test_no_checkpoint_is_a_fresh_start(tmp_path):
    restored = checkpoint.recover(tmp_path, *_node())
    assert (restored.round, restored.path, restored.warnings, restored.repairs) == (0, None, [], [])


def test_flipped_tensor_bytes_are_refused_with_one_line(tmp_path):
    model = _save(tmp_path, 1)
    _flip_weight_bytes(tmp_path / CHECKPOINT, model)
    plain = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # torch itself does not notice
    assert not torch.equal(plain["model"]["0.weight"], model[0].weight)
    with pytest.raises(UserError) as err:
        checkpoint.load(tmp_path, *_node())
    message = str(err.value)
    assert str(tmp_path / CHECKPOINT) in message and "corrupt" in message and "move" in message
    assert "\n" not in message


@pytest.mark.parametrize("part", ["round", "fingerprint", "model", "optimizer", "torch_rng", "metrics_row"])
def test_the_digest_covers_every_part(tmp_path, part):
    _save(tmp_path, 2)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    if part == "round":
        state["round"] = 7
    elif part == "fingerprint":
        state["fingerprint"] = "0" * 64
    elif part == "model":
        state["model"]["2.bias"][1] += 1e-6
    elif part == "optimizer":
        state["optimizer"]["state"][0]["momentum_buffer"][0, 0] += 1.0
    elif part == "torch_rng":
        state["torch_rng"][100] ^= 1
    else:
        state["metrics_row"]["val_accuracy"] = 0.99
    torch.save(state, tmp_path / CHECKPOINT)  # readable, but the digest no longer matches
    with pytest.raises(UserError, match="corrupt"):
        checkpoint.load(tmp_path, *_node())


def test_corrupt_checkpoint_falls_back_to_the_previous_one_and_is_set_aside(tmp_path):
    one = _save(tmp_path, 1)
    two = _save(tmp_path, 2)
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["round"] == 1
    _flip_weight_bytes(tmp_path / CHECKPOINT, two)
    model, opt = _node()
    restored = checkpoint.recover(tmp_path, model, opt)
    assert (restored.round, restored.path) == (1, tmp_path / PREVIOUS)
    assert len(restored.warnings) == 1
    assert "corrupt" in restored.warnings[0] and str(tmp_path / PREVIOUS) in restored.warnings[0]
    assert all(torch.equal(a, b) for a, b in zip(_params(model), _params(one), strict=True))
    assert (tmp_path / SET_ASIDE).exists() and not (tmp_path / CHECKPOINT).exists()
    _save(tmp_path, 2)  # the next save keeps the good previous checkpoint
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["round"] == 1
    assert checkpoint.load(tmp_path, *_node()).round == 2


def test_both_checkpoints_bad_is_a_user_error_naming_both(tmp_path):
    _save(tmp_path, 1)
    two = _save(tmp_path, 2)
    _flip_weight_bytes(tmp_path / CHECKPOINT, two)
    (tmp_path / PREVIOUS).write_bytes(b"not a zip file")
    with pytest.raises(UserError) as err:
        checkpoint.recover(tmp_path, *_node())
    message = str(err.value)
    assert str(tmp_path / CHECKPOINT) in message and str(tmp_path / PREVIOUS) in message
    assert "move" in message and "\n" not in message


def test_a_crash_between_the_renames_uses_the_previous_checkpoint(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    _write_metrics(tmp_path, [_row(0), _row(1)])
    # No hard links: current was renamed to prev, the new checkpoint is still the temp file.
    os.replace(tmp_path / CHECKPOINT, tmp_path / PREVIOUS)
    (tmp_path / ".checkpoint.pt.0123456789ab.tmp").write_bytes(b"the round-3 checkpoint")
    restored = checkpoint.recover(tmp_path, *_node())
    assert (restored.round, restored.path) == (2, tmp_path / PREVIOUS)
    assert "missing" in restored.warnings[0]
    assert not (tmp_path / ".checkpoint.pt.0123456789ab.tmp").exists()
    assert _rounds(tmp_path) == [0, 1]


def test_another_architecture_stays_a_user_error(tmp_path):
    _save(tmp_path, 1)
    other = nn.Linear(6, 3)
    with pytest.raises(UserError, match="another model architecture"):
        checkpoint.load(tmp_path, other, torch.optim.SGD(other.parameters(), lr=0.1))


def test_a_checkpoint_without_digest_loads_with_a_warning(tmp_path):
    _save(tmp_path, 2)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    del state["digest"], state["metrics_row"]
    torch.save(state, tmp_path / CHECKPOINT)  # as an older p2pfl wrote it
    restored = checkpoint.load(tmp_path, *_node())
    assert restored.round == 2 and restored.metrics_row is None
    assert "no digest" in restored.warnings[0]


# -- metrics.jsonl ----------------------------------------------------------------------------


def test_append_after_a_torn_line_starts_a_new_line(tmp_path):
    _write_metrics(tmp_path, [_row(0)], tail=b'{"round": 1, "train_lo')
    checkpoint.append_metrics(tmp_path, _row(1))
    assert _rounds(tmp_path) == [0, 1]


def test_recover_skips_a_torn_line_and_keeps_the_next_row(tmp_path):
    _save(tmp_path, 3)
    later = b"".join(json.dumps(_row(r)).encode() + b"\n" for r in (1, 2))
    _write_metrics(tmp_path, [_row(0)], tail=b'{"round": 1, "train_lo\n\xff\xfe garbage\n' + later)
    restored = checkpoint.recover(tmp_path, *_node())
    assert restored.repairs == ["metrics.jsonl: skipped 2 torn line(s)"]
    assert _rounds(tmp_path) == [0, 1, 2]
    assert all(json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines())


def test_recover_drops_rows_of_rounds_that_will_be_redone(tmp_path):
    _save(tmp_path, 3)
    rows = [_row(0), _row(1, skipped=True), _row(2), _row(3), _row(4, skipped=True)]
    _write_metrics(tmp_path, rows)
    restored = checkpoint.recover(tmp_path, *_node())
    assert restored.repairs == ["metrics.jsonl: dropped 2 row(s) of rounds >= 3 (redone)"]
    assert checkpoint.read_metrics(tmp_path) == rows[:3]


def test_recover_appends_the_row_a_crash_lost(tmp_path):
    model, opt = _node(3.0)
    checkpoint.save(tmp_path, 4, model, opt, _row(3))
    rows = [_row(0), _row(1, skipped=True), _row(2, skipped=True)]
    _write_metrics(tmp_path, rows)  # killed after the checkpoint rename
    restored = checkpoint.recover(tmp_path, *_node())
    assert restored.repairs == ["metrics.jsonl: appended the row of round 3 from the checkpoint"]
    assert checkpoint.read_metrics(tmp_path) == rows + [_row(3)]


def test_recover_leaves_consistent_state_untouched(tmp_path):
    _save(tmp_path, 2)
    _write_metrics(tmp_path, [_row(0), _row(1)])
    inode = (tmp_path / METRICS).stat().st_ino
    restored = checkpoint.recover(tmp_path, *_node())
    assert (restored.warnings, restored.repairs) == ([], [])
    assert (tmp_path / METRICS).stat().st_ino == inode  # not rewritten


def test_recover_removes_only_stale_temp_files(tmp_path):
    stale = [".checkpoint.pt.0123456789ab.tmp", ".metrics.jsonl.abcdef012345.tmp",
             ".checkpoint.prev.pt.ffffffffffff.tmp"]
    kept = ["notes.tmp", ".lock", ".checkpoint.pt.xyz.tmp", "metrics.jsonl"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    restored = checkpoint.recover(tmp_path, *_node())
    assert restored.repairs[0] == "removed 3 temp file(s) of interrupted writes"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


# -- a crash at any point ---------------------------------------------------------------------


class _Crash(BaseException):
    """kill -9: nothing after it runs (finally blocks included, as far as file operations go)."""


def _crash_at(m: pytest.MonkeyPatch, k: int, hard_links: bool) -> dict[str, object]:
    """Make the k-th file operation (and every one after it) crash; a write is torn in half."""
    seen: dict[str, object] = {"n": 0, "crashed": None}

    def no_link(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    for name in ("write", "fsync", "link", "replace", "unlink"):
        real = getattr(os, name) if hard_links or name != "link" else no_link

        def op(*args, _real=real, _name=name):
            if seen["crashed"] is None and seen["n"] == k:
                seen["crashed"] = _name
                if _name == "write":
                    _real(args[0], bytes(args[1])[: len(args[1]) // 2])
            if seen["crashed"] is not None:
                raise _Crash(_name)
            seen["n"] += 1
            return _real(*args)

        m.setattr(os, name, op)
    return seen


EXPECTED = {2: [_row(0), _row(1)], 4: [_row(0), _row(1), _row(2, skipped=True), _row(3)]}


def _catch_up_to_4(state: Path) -> None:
    """As the daemon does it: rows of skipped rounds, the checkpoint, then its row."""
    checkpoint.append_metrics(state, _row(2, skipped=True))
    model, opt = _node(4.0)
    checkpoint.save(state, 4, model, opt, _row(3))
    checkpoint.append_metrics(state, _row(3))


@pytest.mark.parametrize("hard_links", [True, False])
def test_checkpoint_and_metrics_agree_after_a_crash_at_any_point(tmp_path, hard_links):
    points = []
    for k in range(60):
        state = tmp_path / f"crash-{k}"
        state.mkdir()
        for r in (1, 2):
            _save(state, r)
            checkpoint.append_metrics(state, _row(r - 1))
        with pytest.MonkeyPatch.context() as m:
            seen = _crash_at(m, k, hard_links)
            try:
                _catch_up_to_4(state)
            except _Crash:
                pass
        if seen["crashed"] is None:
            break
        points.append(seen["crashed"])
        model, opt = _node()
        restored = checkpoint.recover(state, model, opt)
        assert restored.round in EXPECTED, k
        assert checkpoint.read_metrics(state) == EXPECTED[restored.round], k
        assert all(bool((p == restored.round).all()) for p in model.parameters()), k
        assert not [p for p in state.iterdir() if p.name.endswith(".tmp")], k
        assert checkpoint.recover(state, *_node()).repairs == [], k  # repaired for good
    assert len(points) >= 8 and {"write", "fsync", "link", "replace"} <= set(points), points
    assert torch.load(state / PREVIOUS, weights_only=True)["round"] == 2  # the run that finished


# -- failed writes ----------------------------------------------------------------------------


def _assert_previous_kept(state: Path, before: bytes) -> None:
    assert (state / CHECKPOINT).read_bytes() == before
    restored = checkpoint.recover(state, *_node())
    assert (restored.round, restored.warnings) == (1, [])
    assert not [p for p in state.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_append_metrics_on_a_full_disk_raises_state_write_error(tmp_path):
    (tmp_path / METRICS).symlink_to("/dev/full")
    with pytest.raises(StateWriteError) as err:
        checkpoint.append_metrics(tmp_path, _row(0))
    assert str(err.value) == (f"{tmp_path / METRICS}: cannot append the metrics row: "
                              "No space left on device (ENOSPC)")


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_append_metrics_io_error_raises_state_write_error(tmp_path, monkeypatch, code):
    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StateWriteError, match=f"{METRICS}: .*\\({errno.errorcode[code]}\\)$"):
        checkpoint.append_metrics(tmp_path, _row(0))


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize("failing", ["fsync", "link", "replace"])
def test_failed_checkpoint_write_raises_and_keeps_the_last_good_one(tmp_path, monkeypatch, code, failing):
    _save(tmp_path, 1)
    before = (tmp_path / CHECKPOINT).read_bytes()

    def fail(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(StateWriteError) as err:
        _save(tmp_path, 2)
    monkeypatch.undo()
    assert str(err.value) == (f"{tmp_path / CHECKPOINT}: cannot write the checkpoint: "
                              f"{os.strerror(code)} ({errno.errorcode[code]})")
    _assert_previous_kept(tmp_path, before)


def test_a_checkpoint_too_big_for_the_disk_raises_and_keeps_the_last_good_one(tmp_path):
    _save(tmp_path, 1)
    before = (tmp_path / CHECKPOINT).read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))  # a real EFBIG from the kernel
    try:
        with pytest.raises(StateWriteError, match=r"cannot write the checkpoint: File too large \(EFBIG\)"):
            _save(tmp_path, 2)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    _assert_previous_kept(tmp_path, before)


def test_the_digest_tells_types_and_shapes_apart():
    with pytest.raises(TypeError):
        checkpoint.digest({"round": 1, "x": object()})
    assert checkpoint.digest({"a": torch.zeros(2)}) != checkpoint.digest({"a": torch.zeros(2, 1)})
    ints = torch.zeros(2, dtype=torch.int32)
    assert checkpoint.digest({"a": torch.zeros(2)}) != checkpoint.digest({"a": ints})
    assert checkpoint.digest({"a": [1]}) != checkpoint.digest({"a": [True]})
    assert checkpoint.digest({"a": "b"}) != checkpoint.digest({"ab": ""})


# -- one node per state folder ----------------------------------------------------------------

HOLD = ("import sys; from p2pfl.net.state_lock import StateLock; StateLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); sys.stdin.read()")
TRY = ("import sys; from p2pfl.net.state_lock import StateLock; from p2pfl.errors import InUseError\n"
       "try:\n    StateLock(sys.argv[1]).acquire()\n"
       "except InUseError as e:\n    print(e); sys.exit(e.exit_code)")


def _try_lock(state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY, str(state)], capture_output=True, text=True, timeout=60)


def test_lock_refuses_a_second_holder_in_this_process_and_frees_on_exit(tmp_path):
    with StateLock(tmp_path):
        with pytest.raises(InUseError) as err:
            StateLock(tmp_path).acquire()
        assert str(err.value) == (f"{tmp_path} is used by another p2pfl node (pid {os.getpid()}); "
                                  "one node per state folder")
    with StateLock(tmp_path):  # released on exit
        pass


def test_lock_refuses_another_process(tmp_path):
    with StateLock(tmp_path):
        proc = _try_lock(tmp_path)
        assert proc.returncode == InUseError.exit_code == 4
        assert f"(pid {os.getpid()})" in proc.stdout
    proc = _try_lock(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lock_of_a_killed_process_is_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(InUseError, match=f"pid {holder.pid}"):
            StateLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with StateLock(tmp_path) as lock:
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        assert lock.path == tmp_path / ".lock"
