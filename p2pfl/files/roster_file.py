"""Roster files: the consortium's TOML roster read from and written to disk (mode 0644), its
signed versions (p2pfl.protocol.roster_chain) and the versions a node stores in STATE_DIR/rosters/."""

from __future__ import annotations

import re
from pathlib import Path

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.protocol.roster import InvalidRoster, Roster, parse_roster, roster_to_toml
from p2pfl.protocol.roster_chain import MAX_TEXT, RosterVersion, parse_version, version_to_toml

ROSTER_FILE_MODE = 0o644
ROSTERS_DIR = "rosters"  # STATE_DIR/rosters/v{N}.toml: the versions a node accepted
_STORED = re.compile(r"v([1-9][0-9]{0,8})\.toml")


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


def load_version(path: Path) -> RosterVersion:
    """A roster file as a version (a plain roster is version 1), its signatures included; at most
    MAX_TEXT bytes are read. Every problem raises UserError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TEXT + 1)
    except FileNotFoundError:
        raise UserError(f"roster file {path} does not exist") from None
    except OSError as e:
        raise UserError(f"cannot read roster file {path}: {e.strerror}") from None
    if len(data) > MAX_TEXT:
        raise UserError(f"{path}: more than {MAX_TEXT} bytes, not a roster file")
    try:
        return parse_version(data.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text, not a roster file") from None
    except InvalidRoster as e:
        raise UserError(str(e)) from None


def write_version(path: Path, version: RosterVersion, overwrite: bool = False) -> None:
    """Write a roster version atomically (mode 0644); FileExistsError if it exists unless overwrite."""
    write_atomic(Path(path), version_to_toml(version).encode(), ROSTER_FILE_MODE, overwrite)


def stored_versions(state_dir: Path) -> list[Path]:
    """The files STATE_DIR/rosters/v{N}.toml, sorted by N (other names are not versions); a
    missing folder is an empty list."""
    folder = Path(state_dir) / ROSTERS_DIR
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UserError(f"cannot read the folder {folder}: {e.strerror}") from None
    found = [(int(m.group(1)), p) for p in entries if (m := _STORED.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]

