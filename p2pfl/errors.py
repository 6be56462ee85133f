"""Exceptions that end a command with one clear line, and the exit codes they map to.

Exit codes of every `p2pfl` command (documented in the README):

    0  done (or stopped by SIGINT/SIGTERM with the last checkpoint kept)
    2  bad input: config, plan, roster, key, data file, command-line flag; also
       `p2pfl node --check` when a check failed (a set-up to fix, like bad input), and
       `p2pfl roster verify` when a version does not follow the one before
    3  the node could not write its state (disk full, I/O error); the last good checkpoint is kept
    4  already running: the state folder is locked by another node, or the listen address is in use
    5  a checked artefact is invalid (`p2pfl inspect`: bad signature or corrupt payload)
    6  peers did not come: the start quorum (gossip.min_peers) was not reached before
       gossip.start_timeout
    7  the roster rotated this node's key (a newer roster version gives its name another peer
       ID): start it again with the new key in node.key_file; it resumes from its checkpoint
  130  interrupted at the terminal

Who raises what:

    UserError             bad input from a person (config, flags, files), found by the CLI,
                          config, simulator, experiments and node-building code; exit 2
      StateWriteError     exit 3
      InUseError          exit 4
    GossipSettingError    (p2pfl.gossip) a gossip setting that cannot be built   } reported like
    LearningSettingError  (p2pfl.learning) a learning setting or input            } a UserError
    InvalidMessage        (p2pfl.protocol) bytes from a peer that fail a check: dropped, never
                          a command's error; ProtocolViolation (a subclass) when the message is
                          well formed and validly signed but breaks the protocol

None is a ValueError: ValueError and TypeError mean a programming error.
"""

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.learning.errors import LearningSettingError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STATE_WRITE = 3
EXIT_IN_USE = 4
EXIT_INVALID = 5
EXIT_NO_QUORUM = 6
EXIT_KEY_ROTATED = 7


class UserError(Exception):
    """A problem the user can fix. The CLI prints its message on one line and exits with code 2."""

    exit_code = EXIT_USAGE


class StateWriteError(UserError):
    """Writing the node's state failed (ENOSPC, EIO, ...); the message names the file and error."""

    exit_code = EXIT_STATE_WRITE


class InUseError(UserError):
    """Another node holds this state folder, or the listen address is taken."""

    exit_code = EXIT_IN_USE


# Bad input from a person, whichever layer found it: the CLI prints it on one line and exits
# with its exit_code (2 when it has none).
BAD_INPUT: tuple[type[Exception], ...] = (UserError, GossipSettingError, LearningSettingError)


def exit_code_of(exc: BaseException) -> int:
    """The exit code of one of BAD_INPUT."""
    return getattr(exc, "exit_code", EXIT_USAGE)
