"""The Dockerfile and the systemd unit agree with the CLI: commands, flags, paths and exit codes.

Nothing here needs a container engine, except the one test that builds the image (skipped
without a working docker or podman)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from p2pfl import __version__, cli
from p2pfl.errors import EXIT_IN_USE, EXIT_NO_QUORUM, EXIT_USAGE
from p2pfl.settings.node import NodeSection

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "p2pfl-node.service"
DOCKERFILE = ROOT / "Dockerfile"


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values, in order]}} (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key} set {len(values)} times"
    return values[0]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return out


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1]:]


def _node_args(argv: list[str]):
    """The parsed arguments of `p2pfl ARGV`, which must be the node command with exact flags."""
    parser = cli._parser()
    args = parser.parse_args(argv)
    assert args.func is cli._cmd_node, f"{argv} is not the node command"
    # argparse also takes an abbreviation (--conf); a file should spell each flag in full
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {f for action in sub.choices[argv[0]]._actions for f in action.option_strings}
    for word in argv[1:]:
        if word.startswith("-"):
            assert word.split("=")[0] in flags, f"{word}: not a flag of `p2pfl {argv[0]}`"
    return args


def test_a_wrong_flag_is_refused_by_the_parser():
    # the checks below mean something only if the parser refuses what the CLI does not accept
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["node", "--confg", "/etc/p2pfl/node.toml"])


# --- the systemd unit ---------------------------------------------------------------------------

def test_unit_execstart_is_the_node_command():
    unit = _unit(UNIT)
    argv = shlex.split(_one(unit, "Service", "ExecStart"))
    assert argv[0] == "/opt/p2pfl/.venv/bin/p2pfl"
    args = _node_args(argv[1:])
    assert args.config == Path("/etc/p2pfl/node.toml")
    env_file = _one(unit, "Service", "EnvironmentFile")
    assert env_file == "-/etc/p2pfl/env"  # optional ('-'): a node without secrets has none
    assert Path(env_file.lstrip("-")).parent == args.config.parent


def test_unit_does_not_restart_when_a_person_must_act():
    unit = _unit(UNIT)
    assert _one(unit, "Service", "Restart") == "on-failure"
    codes = {int(c) for c in _one(unit, "Service", "RestartPreventExitStatus").split()}
    assert codes == {EXIT_USAGE, EXIT_IN_USE, EXIT_NO_QUORUM}


def test_unit_runs_unprivileged_with_its_state_writable():
    unit = _unit(UNIT)
    service = unit["Service"]
    assert _one(unit, "Service", "User") == "p2pfl"
    assert _one(unit, "Service", "KillSignal") == "SIGTERM"  # the node stops cleanly on it
    assert int(_one(unit, "Service", "TimeoutStopSec")) >= 10
    state = Path("/var/lib") / _one(unit, "Service", "StateDirectory")
    assert state == Path("/var/lib/p2pfl")
    assert str(state) in " ".join(service["ReadWritePaths"]).split()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}.items():
        assert _one(unit, "Service", key) == value
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


# --- the Dockerfile -----------------------------------------------------------------------------

def test_dockerfile_installs_cpu_torch_before_the_package():
    runs = [rest for word, rest in _instructions(DOCKERFILE) if word == "RUN"]
    torch = [i for i, r in enumerate(runs) if "torch==2.13.0" in r]
    package = [i for i, r in enumerate(runs) if re.search(r"pip install (\S+ )*\.(\s|$)", r)]
    assert len(torch) == 1 and package, "one RUN installs torch==2.13.0, a later one `pip install .`"
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch[0]]
    assert torch[0] < package[0]


def test_dockerfile_base_and_copied_files():
    instructions = _instructions(DOCKERFILE)
    bases = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    assert bases and all(b == "python:3.11-slim" for b in bases)
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", "results", ".git", "**/__pycache__"):
        assert path in ignored


def test_dockerfile_runs_the_node_as_a_non_root_user():
    final = _final_stage(_instructions(DOCKERFILE))
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the final stage runs as a non-root USER"
    created = " ".join(rest for word, rest in final if word == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid 10001\b[^&]*\b{users[-1]}\b", created)


def test_dockerfile_cmd_is_the_node_command_on_mounted_files():
    final = dict(_final_stage(_instructions(DOCKERFILE)))
    assert json.loads(final["ENTRYPOINT"]) == ["p2pfl"]
    args = _node_args(json.loads(final["CMD"]))
    volumes = [Path(v) for v in json.loads(final["VOLUME"])]
    assert volumes == [Path("/data"), Path("/state")]
    assert args.config.parent == Path("/data")
    port = re.search(r"/tcp/(\d+)", NodeSection().listen).group(1)
    assert final["EXPOSE"].split() == [port]  # the node's default listen port


def _engine() -> tuple[str | None, str]:
    for name in ("docker", "podman"):
        if shutil.which(name):
            probe = subprocess.run([name, "info"], capture_output=True, text=True, timeout=60)
            if probe.returncode == 0:
                return name, ""
            return None, f"{name} is on PATH but does not answer (`{name} info` failed)"
    return None, "no container engine (docker or podman) on PATH"


def test_the_image_builds_and_runs_as_uid_10001():
    engine, why = _engine()
    if engine is None:
        pytest.skip(why)
    tag = "p2pfl-test:packaging"
    subprocess.run([engine, "build", "-t", tag, str(ROOT)], check=True, timeout=3600)
    version = subprocess.run([engine, "run", "--rm", tag, "--version"], capture_output=True,
                             text=True, check=True, timeout=300)
    assert version.stdout.strip() == f"p2pfl {__version__}"
    uid = subprocess.run([engine, "run", "--rm", "--entrypoint", "id", tag, "-u"],
                         capture_output=True, text=True, check=True, timeout=300)
    assert uid.stdout.strip() == "10001"
