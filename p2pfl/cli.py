"""The `p2pfl` command: parses arguments and calls into the packages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from pathlib import Path

from p2pfl import __version__
from p2pfl.components import EXTENSION_POINTS
from p2pfl.errors import BAD_INPUT, EXIT_INVALID, EXIT_OK, UserError, exit_code_of
from p2pfl.experiments.backends import BACKEND_NAMES
from p2pfl.settings import choices
from p2pfl.settings.fields import help_of
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.device import DEVICES


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BAD_INPUT as exc:
        print(f"p2pfl: error: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        print("p2pfl: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2pfl", description="Peer-to-peer federated learning for hospitals.")
    p.add_argument("--version", action="version", version=f"p2pfl {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    t = sub.add_parser("topology", help="describe a topology: degrees, spectral gap, rounds to mix",
                       formatter_class=_HelpFormatter)
    _lazy_help(t.add_argument("name", help="topology"), choices.topology_help)
    t.add_argument("--nodes", type=int, required=True)
    t.add_argument("--param", action="append", default=[], metavar="K=V", help="topology parameter")
    t.add_argument("--mixing", default="metropolis_hastings",
                   help="mixing weights: metropolis_hastings (default), max_degree, uniform")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=_cmd_topology)

    s = sub.add_parser("simulate", help="simulate decentralized training of N hospitals in one process",
                       formatter_class=_HelpFormatter)
    s.add_argument("--config", type=Path, help="TOML file with the same keys as the flags")
    _add_setting_flags(s, SimConfig)
    _add_device_flag(s)
    s.add_argument("--json", action="store_true", help="print one JSON summary to stdout")
    s.set_defaults(func=_cmd_simulate)

    e = sub.add_parser("experiment", help="run an experiment file: a grid of simulations over seeds, "
                       "with results.csv, tables and plots")
    e.add_argument("file", type=Path, help="experiment TOML file, e.g. simulations/topologies.toml")
    e.add_argument("--out", type=Path, help="results folder (default: results/NAME beside the file)")
    e.add_argument("--quick", action="store_true", help="the file's [quick] smoke-test grid")
    e.add_argument("--jobs", type=int, default=1, help="worker processes (default 1); with --backend ray "
                   "and no --address, the CPUs of the local Ray")
    e.add_argument("--backend", default="local", choices=BACKEND_NAMES,
                   help="where the runs execute: local worker processes (default), or ray: Ray tasks on "
                   "the cluster at --address (or RAY_ADDRESS; default: a local Ray for this command)")
    e.add_argument("--address", metavar="ADDR", help="with --backend ray: the Ray cluster, e.g. HOST:6379 "
                   "or ray://HOST:10001")
    _add_device_flag(e)
    e.set_defaults(func=_cmd_experiment)

    n = sub.add_parser("node", help="run this hospital's node daemon")
    n.add_argument("--config", type=Path, required=True, help="node.toml (see `p2pfl init`)")
    n.add_argument("--check", action="store_true", help="check the set-up (config, key, roster, plan, "
                   "data, neighbours) and exit: 0 all well, 2 a check failed; trains and writes nothing")
    n.add_argument("--json", action="store_true", help="with --check: print one JSON object")
    n.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="with --check: seconds for each neighbour's dial and hello (default 10)")
    n.set_defaults(func=_cmd_node)

    i = sub.add_parser("init", help="write commented node.toml and plan.toml templates")
    i.add_argument("--out", type=Path, default=Path("node.toml"))
    i.add_argument("--name", default="my-hospital", help="this hospital's name in the roster")
    i.add_argument("--plan", type=Path, help="where to write the plan template (default: plan.toml "
                   "beside node.toml; an existing plan, e.g. the consortium's, is kept)")
    i.set_defaults(func=_cmd_init)

    pl = sub.add_parser("plan", help="the consortium plan: `p2pfl plan draft` proposes one from a table")
    plan_sub = pl.add_subparsers(dest="plan_command", required=True)
    dr = plan_sub.add_parser("draft", help="propose a plan.toml from one hospital's table (types, "
                             "categories, likely identifiers), for a person to review")
    dr.add_argument("--data", required=True,
                    help="the table: FILE.csv, FILE.parquet, csv:PATH or parquet:PATH")
    dr.add_argument("--label", required=True, help="the label column")
    dr.add_argument("--site", help="a site column, not a feature")
    dr.add_argument("--out", type=Path, default=Path("plan.toml"), help="default: plan.toml ('-': print it)")
    dr.set_defaults(func=_cmd_plan_draft)

    rp = sub.add_parser("report", help="the cross-site table of a finished run (consortium_report.json) "
                        "and an HTML page with every site's per-round curves")
    rp.add_argument("--config", type=Path, required=True, help="this hospital's node.toml")
    rp.add_argument("--html", type=Path, help="where to write the page (default: STATE_DIR/report.html)")
    rp.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    rp.set_defaults(func=_cmd_report)

    pt = sub.add_parser("plot", help="the convergence plot of a real run from its nodes' metrics.jsonl")
    pt.add_argument("state_dirs", type=Path, nargs="+", metavar="STATE_DIR", help="nodes' state folders")
    pt.add_argument("--out", type=Path, default=Path("convergence.png"), help="default: convergence.png")
    pt.set_defaults(func=_cmd_plot)

    x = sub.add_parser("export", help="write the trained model as a bundle: model.safetensors, "
                       "model.json (the model card), model.onnx (preprocessing inside)")
    x.add_argument("--config", type=Path, required=True, help="node.toml of the node that trained it")
    x.add_argument("--out", type=Path, required=True, help="the bundle folder (new or empty)")
    x.add_argument("--round", choices=("last", "best"), default="last",
                   help="the last checkpoint (default) or the best round's")
    x.set_defaults(func=_cmd_export)

    pr = sub.add_parser("predict", help="class probabilities of a bundle for a table's rows, as a CSV")
    pr.add_argument("bundle", type=Path, help="a folder written by `p2pfl export`")
    pr.add_argument("data", help="the table: csv:PATH, parquet:PATH, FILE.csv or FILE.parquet")
    pr.add_argument("--out", type=Path, default=Path("predictions.csv"), help="default: predictions.csv")
    pr.add_argument("--id-column", metavar="COL", help="name each row by this column (default: row number)")
    pr.add_argument("--rename", action="append", default=[], metavar="LOCAL=PLAN",
                    help="this table's column LOCAL is the plan's PLAN (repeatable)")
    pr.add_argument("--config", type=Path, help="take the column names of this node.toml (data.columns)")
    pr.set_defaults(func=_cmd_predict)

    ev = sub.add_parser("evaluate", help="clinical figures of a bundle on a labelled table (AUROC, "
                        "sensitivity, specificity, calibration, ...), each with a 95% bootstrap interval")
    ev.add_argument("bundle", type=Path, help="a folder written by `p2pfl export`")
    ev.add_argument("data", help="the table, with the label column: csv:PATH, parquet:PATH, FILE.csv ...")
    ev.add_argument("--threshold", type=float, default=0.5, help="binary: P(positive class) at which a "
                    "row is called positive (sensitivity, specificity, confusion); default 0.5")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plots", type=Path, metavar="DIR", help="write roc.png and calibration.png here")
    ev.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ev.add_argument("--rename", action="append", default=[], metavar="LOCAL=PLAN",
                    help="this table's column LOCAL is the plan's PLAN (repeatable)")
    ev.add_argument("--config", type=Path, help="take the column names of this node.toml (data.columns)")
    ev.set_defaults(func=_cmd_evaluate)

    k = sub.add_parser("keygen", help="create this node's Ed25519 key (mode 0600); prints the peer ID")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--passphrase-env", metavar="VAR",
                   help="encrypt the key with the passphrase held in environment variable VAR")
    k.set_defaults(func=_cmd_keygen)

    pid = sub.add_parser("id", help="print the peer ID of an existing key file")
    pid.add_argument("--key", type=Path, required=True, help="key file written by `p2pfl keygen`")
    pid.add_argument("--passphrase-env", metavar="VAR",
                     help="decrypt the key with the passphrase held in environment variable VAR")
    pid.set_defaults(func=_cmd_id)

    c = sub.add_parser("components", help="list every aggregator, compression, topology, model, data "
                       "source, partition and attack, with parameters and papers")
    c.add_argument("kind", nargs="?", choices=[k.replace(" ", "_") for k in EXTENSION_POINTS],
                   help="only this extension point")
    c.add_argument("--markdown", action="store_true", help="print a Markdown table")
    c.add_argument("--json", action="store_true", help="print one JSON list")
    c.set_defaults(func=_cmd_components)

    v = sub.add_parser("inspect", help="decode an encoded model update and check its signature "
                       f"(exit {EXIT_INVALID} if the signature or payload is bad)")
    v.add_argument("file", type=Path)
    v.set_defaults(func=_cmd_inspect)

    st = sub.add_parser("status", help="this node's round and state, each member's last round heard, "
                        "updates refused, epsilon, latest validation figures")
    st.add_argument("--config", type=Path, required=True, help="node.toml of the node")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS",
                    help="refresh every SECONDS (default 2) until Ctrl-C")
    st.set_defaults(func=_cmd_status)

    au = sub.add_parser("audit", help="the node's audit log: `p2pfl audit verify STATE_DIR` checks its chain")
    audit_sub = au.add_subparsers(dest="audit_command", required=True)
    av = audit_sub.add_parser("verify", help="check every line of STATE_DIR/audit.jsonl; names the first "
                              f"broken one (exit {EXIT_INVALID})")
    av.add_argument("state_dir", type=Path, metavar="STATE_DIR", help="the node's state folder (or the file)")
    av.set_defaults(func=_cmd_audit_verify)

    _add_roster_commands(sub)

    d = sub.add_parser("demo", help="run a consortium of real node processes on this machine",
                       formatter_class=_HelpFormatter)
    d.add_argument("--nodes", type=int, default=4)
    d.add_argument("--rounds", type=int, default=10)
    d.add_argument("--dataset", default="breast_cancer",
                   help="bundled data, or a table (csv:PATH, parquet:PATH) dealt out to the hospitals")
    d.add_argument("--label-column", default="label", help="the label column of a table")
    _lazy_help(d.add_argument("--topology", default="ring", help="topology"), choices.topology_help)
    d.add_argument("--partition", default="dirichlet:0.5", help="how the data is split (non-IID)")
    _lazy_help(d.add_argument("--aggregator", default="mean", help="aggregator"), choices.aggregator_help)
    _lazy_help(d.add_argument("--compression", default="none", help="compression"), choices.compression_help)
    d.add_argument("--dp", default="", metavar="noise=SIGMA,clip=C[,delta=D]",
                   help="DP-SGD at every hospital; the table shows each one's epsilon")
    d.add_argument("--dir", type=Path, help="working folder (default: a new temporary folder)")
    d.add_argument("--json", action="store_true", help="print the per-hospital figures as JSON")
    d.set_defaults(func=_cmd_demo)
    return p


def _add_roster_commands(sub: argparse._SubParsersAction) -> None:
    ro = sub.add_parser("roster", help="change the consortium: propose, sign, merge and verify signed "
                        "roster versions")
    roster_sub = ro.add_subparsers(dest="roster_command", required=True)
    pp = roster_sub.add_parser("propose", help="write version n+1 of the roster with one change "
                               "(unsigned, or signed with --key); prints its digest and who must sign")
    pp.add_argument("--roster", type=Path, required=True, help="the current version (roster.toml)")
    pp.add_argument("--effective-round", type=int, required=True, metavar="N",
                    help="the first round with the new members; a few rounds ahead (a version that "
                    "arrives after it is refused)")
    pp.add_argument("--threshold", type=int, metavar="T", help="signatures of the new version's members "
                    "that the version after it needs (0: a majority; default: as now)")
    pp.add_argument("--out", type=Path, required=True, help="the proposal file (not overwritten)")
    change = pp.add_mutually_exclusive_group(required=True)
    change.add_argument("--add", nargs="+", metavar=("NAME PEER_ID ADDR", "ADDR"), help="a new member")
    change.add_argument("--remove", nargs=1, metavar="NAME", help="a member leaves")
    change.add_argument("--rotate", nargs=2, metavar=("NAME", "NEW_PEER_ID"),
                        help="a member's new key (a stolen or lost one)")
    change.add_argument("--address", nargs="+", metavar=("NAME ADDR", "ADDR"),
                        help="a member's new addresses")
    _add_key_flags(pp, required=False, what="sign the proposal too")
    pp.set_defaults(func=_cmd_roster_propose)

    sg = roster_sub.add_parser("sign", help="add this key's signature to a proposal, in place")
    sg.add_argument("file", type=Path, help="the proposal (version n+1)")
    _add_key_flags(sg, required=True, what="a member's key file")
    sg.add_argument("--previous", type=Path, metavar="ROSTER", help="the version it follows (roster.toml): "
                    "refuse a key that is not its member or a file that does not follow it; count signatures")
    sg.set_defaults(func=_cmd_roster_sign)

    mg = roster_sub.add_parser("merge", help="one file with every signature of several signed copies of "
                               "the same proposal")
    mg.add_argument("files", type=Path, nargs="+", metavar="FILE")
    mg.add_argument("--out", type=Path, required=True, help="the merged file (not overwritten unless one "
                    "of the FILEs)")
    mg.set_defaults(func=_cmd_roster_merge)

    vf = roster_sub.add_parser("verify", help="check a chain of versions: each signed by enough members of "
                               "the one before (the first is trusted as given)")
    vf.add_argument("files", type=Path, nargs="*", metavar="FILE", help="the versions, oldest first")
    vf.add_argument("--config", type=Path, help="instead: the chain a node holds (node.roster, then "
                    "STATE_DIR/rosters/v{N}.toml)")
    vf.set_defaults(func=_cmd_roster_verify)


def _add_key_flags(parser: argparse.ArgumentParser, required: bool, what: str) -> None:
    parser.add_argument("--key", type=Path, required=required, help=what)
    parser.add_argument("--passphrase-env", metavar="VAR",
                        help="decrypt the key with the passphrase held in environment variable VAR")


def _add_setting_flags(parser: argparse.ArgumentParser, schema: type) -> None:
    """One flag per field of a settings dataclass, with the field's help text (a new setting is
    declared once, in p2pfl.settings). Every flag defaults to None: "not given", so that it does
    not override the --config file."""
    hints = typing.get_type_hints(schema)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        base = next((t for t in (bool, int, float, str) if t is hint or t in typing.get_args(hint)), str)
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = default not in (None, "") and default is not False
        suffix = f" (default: {default})" if shown else ""
        exclusive = f.metadata.get("exclusive")
        if exclusive and exclusive not in groups:
            groups[exclusive] = parser.add_mutually_exclusive_group()
        target = groups[exclusive] if exclusive else parser
        kwargs: dict[str, object] = {"help": f.name, "default": None}
        if base is bool:
            kwargs["action"] = "store_true"
        elif f.metadata.get("action") == "append":
            kwargs["action"] = "append"
        else:
            kwargs["type"] = base
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        action = target.add_argument("--" + f.name.replace("_", "-"), **kwargs)  # type: ignore[arg-type]
        _lazy_help(action, lambda f=f, suffix=suffix: help_of(f) + suffix)


def _add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="where the vectorized engine computes: cpu (default), cuda (a GPU), or auto "
                        "(cuda when there is one); not part of a run's settings or key")


def _lazy_help(action: argparse.Action, text: typing.Callable[[], str]) -> None:
    """Help built only when shown (it may list a registry, whose import is slow)."""
    action.lazy_help = text  # type: ignore[attr-defined]


class _HelpFormatter(argparse.HelpFormatter):
    """Shows the lazy help texts of _lazy_help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        lazy = getattr(action, "lazy_help", None)
        return lazy().replace("%", "%%") if lazy else action.help


def _cmd_node(args: argparse.Namespace) -> int:
    if args.check:
        return _check_node(args)
    if args.json or args.timeout is not None:
        raise UserError("--json and --timeout go with --check")
    from p2pfl.net.daemon import run_node
    from p2pfl.settings.load import node_settings

    return run_node(node_settings(args.config))


def _check_node(args: argparse.Namespace) -> int:
    """`p2pfl node --check`: the checklist of p2pfl.net.preflight; exit 2 if a check failed."""
    from p2pfl.net import preflight

    timeout = preflight.DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    results = preflight.run_checks(args.config, timeout)
    print(preflight.as_json(results) if args.json else preflight.text(results))
    return preflight.exit_code(results)


def _cmd_init(args: argparse.Namespace) -> int:
    import os

    from p2pfl.atomic import write_atomic
    from p2pfl.settings.toml_out import node_template, plan_template
    from p2pfl.tomlio import read_toml

    if args.out.exists():
        raise UserError(f"{args.out} exists; not overwriting it")
    plan = args.plan or args.out.parent / "plan.toml"
    relative = os.path.relpath(plan.resolve(), args.out.resolve().parent)  # node.plan's form
    write_atomic(args.out, node_template(args.name, relative))
    if plan.exists():
        read_toml(plan)  # an unreadable plan is said now
        print(f"wrote {args.out} (kept the plan {plan}); edit it, then: p2pfl keygen --out node.key")
    else:
        write_atomic(plan, plan_template())
        print(f"wrote {args.out} and {plan}; edit them (or propose a plan from a table: "
              "p2pfl plan draft), then: p2pfl keygen --out node.key")
    return 0


def _cmd_plan_draft(args: argparse.Namespace) -> int:
    from p2pfl.atomic import write_atomic
    from p2pfl.commands import draft_plan

    if str(args.out) != "-" and args.out.exists():
        raise UserError(f"{args.out} exists; not overwriting it")
    text, notes = draft_plan(args.data, args.label, args.site)
    if str(args.out) == "-":
        print(text, end="")
        return 0
    write_atomic(args.out, text)
    for line in notes[1:]:
        print(f"  {line}", file=sys.stderr)
    print(f"wrote {args.out}: review it (the notes are at its top), then share it with every member",
          file=sys.stderr)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from p2pfl.run_plot import plot_runs

    print(f"wrote {plot_runs(args.state_dirs, args.out)}", file=sys.stderr)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from p2pfl.net.reports import REPORT_FILE
    from p2pfl.report_page import load_report, print_table, write_html
    from p2pfl.settings.load import node_settings

    settings = node_settings(args.config)
    state = settings.path(settings.node.state_dir)
    report = load_report(state / REPORT_FILE)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    page = args.html or state / "report.html"
    write_html(report, page)
    print(f"wrote {page}", file=sys.stderr)
    return 0

def _cmd_export(args: argparse.Namespace) -> int:
    from p2pfl.product.export import export_node

    bundle = export_node(args.config, args.out, args.round)
    print(f"wrote {bundle.path}: round {bundle.card['round']}, classes {', '.join(bundle.classes)}, "
          f"ONNX checked on {bundle.card['onnx']['checked_rows']} rows")  # type: ignore[index]
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from p2pfl.product.bundle import load_bundle
    from p2pfl.product.predict import predict, progress_bar, renames, write_predictions

    bundle = load_bundle(args.bundle)
    with progress_bar() as bar:
        pred = predict(bundle, args.data, renames(args.rename, args.config), args.id_column, bar)
    write_predictions(pred, args.out)
    print(f"wrote {args.out}: {len(pred.ids)} rows", file=sys.stderr)
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from p2pfl.product.bundle import load_bundle
    from p2pfl.product.evaluate import evaluate, write_plots
    from p2pfl.product.predict import predict, progress_bar, renames

    if args.resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {args.resamples}")
    bundle = load_bundle(args.bundle)
    with progress_bar() as bar:
        pred = predict(bundle, args.data, renames(args.rename, args.config), None, bar)
    result = evaluate(bundle, pred, args.threshold, args.resamples)
    for line in result.warnings:
        print(f"p2pfl: warning: {line}", file=sys.stderr)
    print(json.dumps(result.json(), indent=1) if args.json else result.table())
    if args.plots:
        for path in write_plots(bundle, pred, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    from p2pfl.commands import keygen

    print(keygen(args.out, args.passphrase_env))
    return 0


def _cmd_id(args: argparse.Namespace) -> int:
    from p2pfl.commands import key_peer_id

    print(key_peer_id(args.key, args.passphrase_env))
    return EXIT_OK


def _cmd_components(args: argparse.Namespace) -> int:
    from p2pfl import components

    kinds = [args.kind.replace("_", " ")] if args.kind else None
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in components.rows(kinds)], indent=1))
    else:
        print(components.markdown(kinds) if args.markdown else components.text(kinds))
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from p2pfl.commands import inspect

    report = inspect(args.file)
    print(report.text)
    return EXIT_OK if report.valid else EXIT_INVALID


def _cmd_status(args: argparse.Namespace) -> int:
    from p2pfl.settings.load import node_settings
    from p2pfl.status_view import show

    if args.watch is not None and not (math.isfinite(args.watch) and args.watch > 0):
        raise UserError(f"--watch must be a positive number of seconds, got {args.watch}")
    return show(node_settings(args.config), args.json, args.watch)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from p2pfl.net.audit import AUDIT, verify

    path = args.state_dir if args.state_dir.is_file() else args.state_dir / AUDIT
    result = verify(path)
    if not result.ok:
        print(f"{path}:{result.first_bad}: {result.reason}")
        return EXIT_INVALID
    print(f"{path}: {result.lines} lines, chain intact (last hash {result.last_hash})")
    return EXIT_OK


def _cmd_roster_propose(args: argparse.Namespace) -> int:
    from p2pfl.roster_commands import CHANGES, Change, propose

    kind = next(k for k in CHANGES if getattr(args, k) is not None)
    if args.passphrase_env and args.key is None:
        raise UserError("--passphrase-env goes with --key")
    lines = propose(args.roster, Change(kind, tuple(getattr(args, kind))), args.effective_round, args.out,
                    args.threshold, args.key, args.passphrase_env)
    print("\n".join(lines))
    return EXIT_OK


def _cmd_roster_sign(args: argparse.Namespace) -> int:
    from p2pfl.roster_commands import sign

    print("\n".join(sign(args.file, args.key, args.passphrase_env, args.previous)))
    return EXIT_OK


def _cmd_roster_merge(args: argparse.Namespace) -> int:
    from p2pfl.roster_commands import merge

    print("\n".join(merge(args.files, args.out)))
    return EXIT_OK


def _cmd_roster_verify(args: argparse.Namespace) -> int:
    from p2pfl.roster_commands import node_chain, verify, verify_versions

    if bool(args.files) == bool(args.config):
        raise UserError("roster verify takes the roster files FILE... or --config node.toml (one of the two)")
    print("\n".join(verify_versions(node_chain(args.config)) if args.config else verify(args.files)))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from p2pfl.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(nodes=args.nodes, rounds=args.rounds, dataset=args.dataset,
                                topology=args.topology, partition=args.partition, folder=args.dir,
                                json=args.json, aggregator=args.aggregator,
                                compression=args.compression, dp=args.dp,
                                label_column=args.label_column))


def _cmd_topology(args: argparse.Namespace) -> int:
    from p2pfl.gossip.mixing import predicted_rounds
    from p2pfl.gossip.topology import build_topology

    topo = build_topology(args.name, args.nodes, args.param, seed=args.seed, scheme=args.mixing)
    lo, mean, hi = topo.degree_stats()
    src, _ = topo.edges(0)
    found = topo.gap()
    gap = found.value
    rounds = predicted_rounds(gap)
    info = {
        "topology": args.name,
        "params": topo.params,
        "nodes": topo.n,
        "edges": len(src) if topo.time_varying else len(src) // 2,
        "directed": topo.time_varying,
        "time_varying": topo.time_varying,
        "degree_min": lo,
        "degree_mean": mean,
        "degree_max": hi,
        "connected": topo.is_connected(),
        "mixing": args.mixing,
        "spectral_gap": gap,
        "spectral_gap_method": found.describe(),
        "predicted_rounds": rounds if math.isfinite(rounds) else None,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    kind = "directed edges per round" if topo.time_varying else "edges"
    print(f"{args.name}: {topo.n} nodes, {info['edges']} {kind}")
    print(f"degree min/mean/max: {lo} / {mean:.2f} / {hi}")
    print(f"connected: {'yes' if info['connected'] else 'NO'}")
    print(f"spectral gap ({args.mixing}): {gap:.6g}, {found.describe()}")
    print(f"rounds to shrink consensus error 1000x (ln(1000)/gap): "
          f"{'never' if not math.isfinite(rounds) else f'{rounds:.1f}'}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from p2pfl.settings.load import sim_config
    from p2pfl.sim.report import summary, write_outputs
    from p2pfl.sim.runner import simulate

    _no_numpy_huge_pages()

    flags = {k: v for k, v in vars(args).items() if k not in ("config", "json", "func", "device")}
    cfg = sim_config(args.config, flags)
    with _progress() as progress:
        result = simulate(cfg, progress, device=args.device)
    if cfg.out:
        for path in write_outputs(result, Path(cfg.out)):
            print(f"wrote {path}", file=sys.stderr)
    if cfg.export:
        from p2pfl.product.export import export_sim

        print(f"wrote the bundle {export_sim(cfg, result, Path(cfg.export)).path}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary(result)))
    else:
        _print_result(result)
    return 0


def _no_numpy_huge_pages() -> None:
    """numpy asks the kernel for transparent huge pages on every large array. Where the kernel
    then compacts memory on the page fault (THP defrag "madvise", as on the 2-core VM of the
    benchmarks), faulting in the 800 MB table of 50,000 synthetic sites took 0.2 to 2.4 s instead
    of a steady 0.3 s. NUMPY_MADVISE_HUGEPAGE=1 in the environment keeps numpy's default."""
    import os

    import numpy as np

    setter = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is None and setter is not None:
        setter(False)


def _cmd_experiment(args: argparse.Namespace) -> int:
    from p2pfl.experiments.runner import default_out, load_experiment, run_experiment

    exp = load_experiment(args.file, quick=args.quick)
    with _progress() as progress:
        report = run_experiment(exp, args.out or default_out(exp), jobs=args.jobs, progress=progress,
                                backend=args.backend, address=args.address, device=args.device)
    for path in report.written:
        print(f"wrote {path}", file=sys.stderr)
    where = f" ({args.backend}, {' and '.join(report.devices)})" if report.devices else ""
    print(f"{exp.name}: {report.planned} runs ({report.skipped} already done, {report.ran} run now) "
          f"in {report.wall_seconds:.1f} s{where}", file=sys.stderr)
    print(report.table, end="")
    return 0


class _progress:
    """A rich progress bar on stderr, one bar per run; a no-op when stderr is not a terminal."""

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = Console(stderr=True)
        self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                            disable=not console.is_terminal, transient=False)
        self.tasks: dict[str, int] = {}
        self.bar.start()
        return self

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = result.config
    table = Table(title=f"{cfg.dataset} / {cfg.model} / {cfg.nodes} nodes / {cfg.topology} / "
                  f"{cfg.partition} / {cfg.rounds} rounds")
    for col in ("run", "mean acc", "min acc", "avg-model acc", "consensus", "loss", "MB/node"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for run in result.runs:
        f = run.rows[-1]
        table.add_row(run.name, f"{f['mean_local_accuracy']:.4f}", f"{f['min_local_accuracy']:.4f}",
                      f"{f['averaged_model_accuracy']:.4f}", f"{f['consensus_distance']:.3g}",
                      f"{f['train_loss']:.4f}", f"{f['mb_sent_per_node']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"spectral gap {result.spectral_gap:.4g} ({result.gap_method}), {result.n_params} "
                  f"parameters, {result.wall_seconds:.1f} s")
    main = result.main
    if main.epsilon is not None:
        console.print(f"differential privacy: epsilon {main.epsilon:.3g} at delta {main.delta:g} "
                      "(largest over nodes)")
    if main.byzantine:
        console.print(f"Byzantine nodes {main.byzantine} ({cfg.attack}); "
                      "accuracies are over the honest nodes")
    if main.timeline:
        from p2pfl.sim.report import timing

        t = timing(result)
        line = (f"{cfg.mode}: {main.timeline[-1]['time']:.4g} simulated time units (a synchronous round: "
                f"{t['sync_round_time']:.4g})")
        if main.local_rounds:
            line += (f"; local rounds per node {min(main.local_rounds)}-{max(main.local_rounds)}, "
                     f"{main.mix_stats['stale_fraction']:.1%} of held models left out as too stale")
        console.print(line)
