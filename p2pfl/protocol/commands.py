"""What the `p2pfl keygen` and `p2pfl inspect` commands do (argparse lives in cli.py)."""

from __future__ import annotations

import os
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.protocol.codec import MAX_MESSAGE_SIZE, parse, payload_ok, signature_ok
from p2pfl.protocol.identity import generate_key, peer_id_of, save_key
from p2pfl.protocol.messages import InvalidMessage


def keygen(out: Path, passphrase_env: str | None) -> str:
    """Write a new Ed25519 key to `out` (mode 0600) and return its peer ID.

    With `passphrase_env`, the key is encrypted with the passphrase held in that environment
    variable. An existing file is never overwritten.
    """
    out = Path(out)
    passphrase = None
    if passphrase_env is not None:
        value = os.environ.get(passphrase_env)
        if not value:
            raise UserError(
                f"environment variable {passphrase_env} (the key passphrase) is not set"
            )
        passphrase = value.encode()
    if not out.parent.is_dir():
        raise UserError(f"cannot write key file {out}: directory {out.parent} does not exist")
    key = generate_key()
    try:
        save_key(key, out, passphrase)
    except FileExistsError:
        raise UserError(f"{out} already exists; refusing to overwrite a key") from None
    except OSError as e:
        raise UserError(f"cannot write key file {out}: {e.strerror}") from None
    return peer_id_of(key)


def inspect(path: Path) -> str:
    """A readable report of an encoded update: header, tensors, signature and payload checks."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MESSAGE_SIZE:
            raise UserError(
                f"{path} is {size} bytes, over the {MAX_MESSAGE_SIZE}-byte update limit"
            )
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        update = parse(data)
    except InvalidMessage as e:
        raise UserError(f"{path} is not a valid model update: {e}") from None
    lines = [
        f"file:          {path} ({len(data)} bytes)",
        f"version:       {update.version}",
        f"sender:        {update.sender}",
        f"round:         {update.round}",
        f"fingerprint:   {update.fingerprint}",
        f"num_samples:   {update.num_samples}",
        f"weight:        {update.weight!r}",
    ]
    for name, value in sorted(update.metrics.items()):
        lines.append(f"metric {name}: {value!r}")
    lines.append(f"signature:     {'OK' if signature_ok(update) else 'INVALID'}")
    lines.append(f"payload:       {'OK' if payload_ok(update) else 'CORRUPT (digest mismatch)'}")
    lines.append("")
    rows = [("name", "dtype", "shape", "bytes")]
    rows += [(t.name, t.dtype, _shape(t.shape), str(t.nbytes)) for t in update.tensors]
    rows.append(("total", "", "", str(update.nbytes)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2])]
        lines.append("  ".join([*cells, row[3].rjust(widths[3])]).rstrip())
    return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
