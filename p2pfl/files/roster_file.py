"""Roster files: the consortium's TOML roster read from and written to disk (mode 0644)."""

from __future__ import annotations

from pathlib import Path

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.protocol.roster import InvalidRoster, Roster, parse_roster, roster_to_toml

ROSTER_FILE_MODE = 0o644


def load_roster(path: Path) -> Roster:
    """Read and validate a roster file; every problem raises UserError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"roster file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read roster file {path}: {e}") from None
    try:
        return parse_roster(text, str(path))
    except InvalidRoster as e:
        raise UserError(str(e)) from None


def write_roster(path: Path, roster: Roster, overwrite: bool = False) -> None:
    """Write a roster file atomically (mode 0644); FileExistsError if it exists unless overwrite."""
    write_atomic(Path(path), roster_to_toml(roster).encode(), ROSTER_FILE_MODE, overwrite)
