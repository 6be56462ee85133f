"""The settings schema: init template, TOML writer, shared defaults, field checks, flags."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib

import pytest

from p2pfl.cli import _parser
from p2pfl.errors import UserError
from p2pfl.files.keys import passphrase_from_env
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topology import parse_params
from p2pfl.learning.models import parse_hidden
from p2pfl.settings import fields as F
from p2pfl.settings.fields import help_of
from p2pfl.settings.load import node_settings, sim_config
from p2pfl.settings.node import NODE_FILE, PLAN_FILE, NodeSection, NodeSettings, file_of, sections
from p2pfl.settings.sim import SimConfig, local_steps
from p2pfl.settings.toml_out import dumps_document, node_template, plan_template, to_toml, value_text


def _template_entries(text: str) -> dict[str, tuple[str, str]]:
    """"section.key" -> (value text, the comment lines above it joined) of a template."""
    out, section, comment = {}, "", []
    for line in text.splitlines():
        if line.startswith("# "):
            comment.append(line[2:])
        elif line.startswith("["):
            section, comment = line.strip("[]"), []
        elif " = " in line:
            key, value = line.split(" = ", 1)
            out[f"{section}.{key}"] = (value, " ".join(comment))
            comment = []
        else:
            comment = []
    return out


def test_every_field_is_in_one_of_the_two_templates_with_its_default_and_help():
    node = _template_entries(node_template("st-marys"))
    plan = _template_entries(plan_template())
    assert not set(node) & set(plan)  # each key lives in one file
    defaults = NodeSettings(node=NodeSection(name="st-marys"))
    expected = set()
    for section in sections():
        for f in dataclasses.fields(getattr(defaults, section)):
            key = f"{section}.{f.name}"
            expected.add(key)
            value, comment = (node if file_of(section, f) == NODE_FILE else plan)[key]
            assert value == value_text(getattr(getattr(defaults, section), f.name)), key
            assert comment == help_of(f) and comment, key
    assert set(node) | set(plan) == expected  # nothing else, nothing written by hand
    # what is this hospital's own is in node.toml; what every member shares, in the plan
    assert {"node.listen", "node.plan", "data.source", "data.columns", "training.threads",
            "gossip.round_timeout"} <= set(node)
    assert {"task.classes", "features.columns", "training.lr", "gossip.topology",
            "privacy.noise"} <= set(plan)


def _write(tmp_path, node_text: str, plan_text: str):
    (tmp_path / "plan.toml").write_text(plan_text)
    path = tmp_path / "node.toml"
    path.write_text(node_text)
    return path


def test_init_templates_load_back_to_the_defaults(tmp_path):
    path = _write(tmp_path, node_template("st-marys"), plan_template())
    assert node_settings(path) == NodeSettings(node=NodeSection(name="st-marys"), base_dir=tmp_path)


def test_written_node_settings_load_back_equal(tmp_path):
    s = NodeSettings(base_dir=tmp_path)
    s.node.name = 'st "mary\'s" \\ north'
    s.data.source, s.task.classes = "csv:patients.csv", ["no", "yes"]
    s.data.columns = {"Age (years)": "age"}
    s.features.columns = [{"name": "age"}, {"name": "sex", "type": "categorical", "categories": ["f", "m"]}]
    s.features.ignore, s.features.missing = ["patient_id"], "impute"
    s.model.hidden = [64, 16]
    s.training.rounds, s.training.lr, s.training.run, s.training.threads = 7, 0.125, "trial-2", 2
    s.gossip.topology, s.gossip.params = "watts_strogatz", {"k": 4, "p": 0.25}
    s.gossip.aggregator, s.gossip.round_timeout = "trimmed_mean:b=1", 3.5
    s.privacy.noise, s.privacy.delta, s.privacy.max_epsilon = 1.1, 1e-6, 8.0
    path = _write(tmp_path, to_toml(s, file=NODE_FILE), to_toml(s, file=PLAN_FILE))
    assert node_settings(path) == s


@pytest.mark.parametrize("file,section,line,message", [
    ("node", "training", "lr = 0.1", "training.lr belongs in plan.toml, not node.toml (it is the same "
     "at every member)"),
    ("node", "task", 'classes = ["a", "b"]', "task.classes belongs in plan.toml"),
    ("plan", "gossip", "round_timeout = 3.0", "gossip.round_timeout belongs in node.toml, not plan.toml "
     "(it is this hospital's own)"),
    ("plan", "data", 'source = "digits"', "data.source belongs in node.toml"),
])
def test_a_key_in_the_wrong_file_is_named_with_where_it_belongs(tmp_path, file, section, line, message):
    texts = {"node": node_template("a"), "plan": plan_template()}
    raw = tomllib.loads(texts[file])
    raw.setdefault(section, {}).update(tomllib.loads(line))
    texts[file] = dumps_document(raw)
    path = _write(tmp_path, texts["node"], texts["plan"])
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / (file + '.toml')}: {message}")):
        node_settings(path)


def test_a_missing_plan_is_one_line_naming_it(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(node_template("a"))
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'plan.toml'}: no such plan file")):
        node_settings(path)


def test_written_sim_config_loads_back_equal(tmp_path):
    cfg = SimConfig(dataset="breast_cancer", hidden="64,16", nodes=8, topology="erdos_renyi",
                    param=["p=0.5"], rounds=12, local_epochs=2, lr=0.01, dp="noise=1.0,clip=1.0",
                    attack="sign_flip:0.25", allow_disconnected=True, dropout=0.1)
    path = tmp_path / "sim.toml"
    path.write_text(to_toml(cfg))
    assert sim_config(path, {}) == cfg


def test_node_and_simulator_share_one_default_per_concept():
    node, sim = NodeSettings(), SimConfig()
    d, task, m, t, g, p = node.data, node.task, node.model, node.training, node.gossip, node.privacy
    pairs = {
        "rounds": (t.rounds, sim.rounds), "local_steps": (t.local_steps, local_steps(sim)),
        "batch_size": (t.batch_size, sim.batch_size), "optimizer": (t.optimizer, sim.optimizer),
        "lr": (t.lr, sim.lr), "momentum": (t.momentum, sim.momentum), "seed": (t.seed, sim.seed),
        "dataset": (d.source, sim.dataset), "label_column": (task.label_column, sim.label_column),
        "partition": (task.partition, sim.partition), "model": (m.kind, sim.model),
        "hidden": (tuple(m.hidden), parse_hidden(sim.hidden)), "topology": (g.topology, sim.topology),
        "mixing": (g.mixing, sim.mixing), "aggregator": (g.aggregator, sim.aggregator),
        "compression": (g.compression, sim.compression),
        **{key: (getattr(g, key), getattr(sim, key)) for key in ("mode", "max_staleness", "staleness_alpha")},
        **{key: (getattr(d, key), getattr(sim, key)) for key in ("sql_query", "sql_table", "password_env")},
    }
    assert set(pairs) | {"delta"} == set(F.SHARED)
    for name, (node_value, sim_value) in pairs.items():
        concept = F.SHARED[name].default
        assert node_value == sim_value == (tuple(concept) if name == "hidden" else concept), name
    assert task.seed == g.seed == t.seed
    from p2pfl.sim.options import DEFAULT_DELTA

    assert p.delta == DEFAULT_DELTA == F.DP_DELTA.default
    assert F.ROUNDS.default == 50  # the simulator's and the old template's; NodeSettings had 10


def test_a_new_node_settings_object_has_its_own_lists():
    a, b = NodeSettings(), NodeSettings()
    a.model.hidden.append(8)
    a.gossip.params["p"] = 1
    assert b.model.hidden == [32] and b.gossip.params == {}


@pytest.mark.parametrize("section,line,message", [
    ("training", 'optimizer = "lbfgs"', "training.optimizer must be sgd or adam, got 'lbfgs'"),
    ("training", "threads = -1", "training.threads must be 0 (all cores) or a positive number"),
    ("training", "local_steps = 0", "training.local_steps must be at least 1"),
    ("training", "lr = 0", "training.lr must be positive"),
    ("model", "hidden = [32, 0]", "model.hidden sizes must be positive"),
    ("gossip", 'aggregator = "avg"', "gossip.aggregator is not valid: unknown aggregator 'avg'"),
    ("gossip", 'compression = "zip"', "gossip.compression is not valid: unknown compression 'zip'"),
    ("gossip", "max_update_mb = 0", "gossip.max_update_mb must be positive"),
    ("gossip", "min_peers = -2", "gossip.min_peers must be -1 (all), 0 (do not wait) or a number"),
    ("gossip", "start_timeout = 0", "gossip.start_timeout must be positive"),
    ("features", 'missing = "guess"', "features.missing must be error, drop_row, impute, got 'guess'"),
    ("features", 'columns = [{ name = "age", type = "text" }]', "features.columns is not valid"),
    ("data", 'columns = { "Age" = 3 }', "data.columns must map names to non-empty strings ('Age' does not)"),
])
def test_field_checks_name_file_key_and_reason(tmp_path, section, line, message):
    key = line.split(" = ")[0]
    field = next(f for f in dataclasses.fields(getattr(NodeSettings(), section)) if f.name == key)
    file = file_of(section, field)
    texts = {NODE_FILE: node_template("a"), PLAN_FILE: plan_template()}
    raw = tomllib.loads(texts[file])
    raw[section].update(tomllib.loads(line))
    texts[file] = dumps_document(raw)
    path = _write(tmp_path, texts[NODE_FILE], texts[PLAN_FILE])
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / file}: {message}")):
        node_settings(path)


def test_every_sim_setting_is_a_simulate_flag_with_its_help():
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    simulate = sub.choices["simulate"]
    flags = {a.dest: a for a in simulate._actions}
    for f in dataclasses.fields(SimConfig):
        assert f.name in flags, f.name
        assert flags[f.name].lazy_help().startswith(help_of(f)) and flags[f.name].default is None
    args = simulate.parse_args(["--rounds", "3", "--param", "p=0.5", "--param", "k=2",
                                "--allow-disconnected", "--hidden", "8,8"])
    got = (args.rounds, args.param, args.allow_disconnected, args.hidden)
    assert got == (3, ["p=0.5", "k=2"], True, "8,8")
    with pytest.raises(SystemExit):
        simulate.parse_args(["--local-steps", "2", "--local-epochs", "1"])
    text = simulate.format_help()
    assert "trimmed_mean" in text and "topk" in text and "one_peer_exponential" in text


def test_topology_params_go_through_the_one_key_value_parser():
    assert parse_params(["p=0.5,k=3", "variant=local"]) == {"p": 0.5, "k": 3, "variant": "local"}
    with pytest.raises(GossipSettingError, match="given twice"):
        parse_params(["p=0.5", "p=0.6"])


def test_passphrase_reader(tmp_path, monkeypatch):
    key = tmp_path / "node.key"
    assert passphrase_from_env(None, key) is None and passphrase_from_env("", key) is None
    monkeypatch.setenv("P2PFL_SCHEMA_PASS", "s3cret")
    assert passphrase_from_env("P2PFL_SCHEMA_PASS", key) == b"s3cret"
    monkeypatch.setenv("P2PFL_SCHEMA_PASS", "")
    with pytest.raises(UserError, match=r"P2PFL_SCHEMA_PASS \(the passphrase for key file .*node.key"):
        passphrase_from_env("P2PFL_SCHEMA_PASS", key)
