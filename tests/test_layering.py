"""Layering: no import cycles, the simulator below the experiments, pure layers without file I/O
or the CLI's error, and the error kinds apart from ValueError."""

import ast
from pathlib import Path

import pytest

from p2pfl.cli import main
from p2pfl.errors import BAD_INPUT, InUseError, StateWriteError, UserError
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.learning.errors import LearningSettingError
from p2pfl.protocol.identity import InvalidKey, InvalidPeerId
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation
from p2pfl.protocol.multiaddr import InvalidMultiaddr
from p2pfl.protocol.roster import InvalidRoster

PACKAGE = Path(__file__).resolve().parents[1] / "p2pfl"
PURE = ("p2pfl.protocol", "p2pfl.gossip", "p2pfl.learning")


def _imports() -> dict[str, set[str]]:
    """Module -> the p2pfl modules it imports anywhere (function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("p2pfl"):
                deps |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("p2pfl")}
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles():
    assert _cycle(_imports()) is None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_simulator_does_not_import_the_experiments():
    bad = [(m, d) for m, deps in _imports().items() if m.startswith("p2pfl.sim")
           for d in deps if d.startswith("p2pfl.experiments")]
    assert not bad


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_import_no_files_cli_or_network(layer):
    forbidden = ("p2pfl.errors", "p2pfl.atomic", "p2pfl.files", "p2pfl.net", "p2pfl.cli",
                 "p2pfl.commands", "p2pfl.settings", "p2pfl.tomlio")
    bad = [(m, d) for m, deps in _imports().items() if m.startswith(layer)
           for d in deps if d.startswith(forbidden)]
    assert not bad


def test_protocol_opens_no_files():
    for path in (PACKAGE / "protocol").glob("*.py"):
        text = path.read_text()
        for call in ("open(", "read_text(", "read_bytes(", "write_text(", "write_bytes(", "os.stat("):
            assert call not in text, f"{path.name} calls {call}"


def test_error_kinds_are_not_value_errors():
    kinds = (UserError, StateWriteError, InUseError, GossipSettingError, LearningSettingError,
             InvalidMessage, BadSignature, ProtocolViolation, InvalidKey, InvalidRoster, InvalidPeerId,
             InvalidMultiaddr)
    assert not [k for k in kinds if issubclass(k, ValueError)]
    assert issubclass(ProtocolViolation, InvalidMessage) and issubclass(BadSignature, InvalidMessage)
    assert not issubclass(InvalidMessage, UserError) and not issubclass(UserError, InvalidMessage)
    assert not issubclass(GossipSettingError, UserError) and not issubclass(LearningSettingError, UserError)
    assert set(BAD_INPUT) == {UserError, GossipSettingError, LearningSettingError}


def test_the_cli_reports_a_pure_layers_error_in_one_line_with_exit_2(capsys):
    assert main(["topology", "no-such-topology", "--nodes", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("p2pfl: error: unknown topology") and err.count("\n") == 1
