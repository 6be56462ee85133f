"""What the `p2pfl keygen`, `id` and `inspect` commands do (argparse lives in cli.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2pfl.errors import UserError
from p2pfl.files.keys import load_key, passphrase_from_env, save_key
from p2pfl.protocol.codec import MAX_MESSAGE_SIZE, parse, payload_ok, signature_ok
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.protocol.messages import InvalidMessage


def keygen(out: Path, passphrase_env: str | None) -> str:
    """Write a new Ed25519 key to `out` (mode 0600) and return its peer ID.

    With `passphrase_env`, the key is encrypted with the passphrase held in that environment
    variable. An existing file is never overwritten.
    """
    out = Path(out)
    passphrase = passphrase_from_env(passphrase_env, out)
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


def key_peer_id(key: Path, passphrase_env: str | None) -> str:
    """The peer ID of the key in file `key` (decrypted with the passphrase in `passphrase_env`).

    A missing, unreadable, unsafe or undecryptable key file raises UserError naming it.
    """
    key = Path(key)
    return peer_id_of(load_key(key, passphrase_from_env(passphrase_env, key)))


@dataclass(frozen=True)
class Inspection:
    """The report `inspect` prints, and whether the signature and payload both check out."""

    text: str
    valid: bool


def inspect(path: Path) -> Inspection:
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
        f"consortium:    {update.consortium.hex()}",
        *(f"section {name}: {digest.hex()}" for name, digest in sorted(update.sections.items())),
        f"round:         {update.round}",
        f"fingerprint:   {update.fingerprint}",
        f"num_samples:   {update.num_samples}",
        f"weight:        {update.weight!r}",
    ]
    for name, value in sorted(update.metrics.items()):
        lines.append(f"metric {name}: {value!r}")
    signed, intact = signature_ok(update), payload_ok(update)
    lines.append(f"signature:     {'OK' if signed else 'INVALID'}")
    lines.append(f"payload:       {'OK' if intact else 'CORRUPT (digest mismatch)'}")
    lines.append("")
    rows = [("name", "dtype", "shape", "bytes")]
    rows += [(t.name, t.dtype, _shape(t.shape), str(t.nbytes)) for t in update.tensors]
    rows.append(("total", "", "", str(update.nbytes)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2])]
        lines.append("  ".join([*cells, row[3].rjust(widths[3])]).rstrip())
    return Inspection("\n".join(lines), signed and intact)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def draft_plan(data: str, label_column: str, site_column: str | None = None) -> tuple[str, list[str]]:
    """(plan.toml text, notes) proposed from one hospital's table (`p2pfl plan draft`).

    `data` is a file (.csv, .parquet) or a source spec (`csv:PATH`, `parquet:PATH`). The plan
    holds every plan key at its default, with the task and features the table suggests, and the
    notes as comments at its top, for a person to review before it is shared."""
    from p2pfl.learning.draft import draft_schema
    from p2pfl.learning.sources import table_rows
    from p2pfl.settings.node import NodeSettings
    from p2pfl.settings.plan import apply_draft
    from p2pfl.settings.toml_out import plan_template

    draft = draft_schema(table_rows(data, Path.cwd()), label_column, site_column)
    settings = NodeSettings()
    apply_draft(settings, draft, label_column)
    notes = [f"drafted from {data} by `p2pfl plan draft`: review it, then share it with every member",
             *draft.notes]
    head = "".join(f"# {line}\n" for line in notes)
    return head + "\n" + plan_template(settings), notes

