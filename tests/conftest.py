"""Shared fixtures: keep torch single-threaded and deterministic across tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: small simulations are 20x slower when threads fight over
    shared cores. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write_config(tmp_path):
    """write_config(*edits, name="a") -> node.toml path: the `p2pfl init` templates (node.toml and
    plan.toml) in tmp_path, each edit (old, new) replacing text in the template that holds it."""
    from p2pfl.settings.toml_out import node_template, plan_template

    def write(*edits: tuple[str, str], name: str = "a"):
        texts = {"node.toml": node_template(name), "plan.toml": plan_template()}
        for old, new in edits:
            holders = [f for f, text in texts.items() if old in text]
            assert holders, f"neither template has {old!r}"
            texts[holders[0]] = texts[holders[0]].replace(old, new)
        for file, text in texts.items():
            (tmp_path / file).write_text(text)
        return tmp_path / "node.toml"
    return write
