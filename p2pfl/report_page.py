"""`p2pfl report`: the consortium's cross-site table from consortium_report.json, printed, and an
HTML page with every site's per-round curves (PNG images inside the page: readable offline)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from p2pfl.errors import UserError

COLUMNS = (  # (report key, heading)
    ("auroc", "AUROC"), ("sensitivity", "sens."), ("specificity", "spec."),
    ("balanced_accuracy", "bal. acc"), ("accuracy", "acc"), ("brier", "Brier"),
    ("ece", "ECE"),
)
CURVES = (("auroc", "AUROC"), ("balanced_accuracy", "balanced accuracy"), ("accuracy", "accuracy"))


def load_report(path: Path) -> dict:
    """consortium_report.json; one clear line when it is not there (yet) or not readable."""
    if not path.is_file():
        raise UserError(f"{path}: no consortium report (a node writes it when training ends)")
    try:
        report = json.loads(path.read_text())
        _ = [(s["name"], s["status"]) for s in report["sites"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a consortium report ({exc})") from None
    return report


def rows_of(report: dict) -> list[list[str]]:
    """One row of text per site: name, rows, then COLUMNS ("missing" for a member that did not report)."""
    out = []
    for site in report["sites"]:
        if site["status"] != "reported":
            out.append([site["name"], "missing", *["-"] * len(COLUMNS)])
            continue
        figures = site.get("metrics", {})
        out.append([site["name"], str(site.get("rows", "")),
                    *[_number(figures.get(key)) for key, _ in COLUMNS]])
    return out


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"consortium {report['consortium'][:8]}: final model on each site's validation rows")
    table.add_column("site", no_wrap=True)
    for heading in ("rows", *[h for _, h in COLUMNS]):
        table.add_column(heading, justify="right")
    for row in rows_of(report):
        table.add_row(*row)
    Console().print(table)
    if report.get("selection"):
        sel = report["selection"]
        Console().print(f"best round by {sel['metric']}: {sel['round']} (median {sel['score']:.3f} "
                        f"over {sel['members']} sites)")


def write_html(report: dict, path: Path) -> None:
    """The page: the table, the selection and one PNG of per-round curves per figure."""
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in ("site", "rows", *[h for _, h in COLUMNS]))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows_of(report))
    images = "".join(f'<h2>{html.escape(title)} per round</h2><img alt="{html.escape(title)}" '
                     f'src="data:image/png;base64,{_curve_png(report, key, title)}">'
                     for key, title in CURVES)
    sel = report.get("selection")
    chosen = (f"<p>Best round by {html.escape(sel['metric'])}: {sel['round']} (median "
              f"{sel['score']:.3f} over {sel['members']} sites).</p>" if sel else "")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>p2pfl consortium report</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}</style></head><body>"
            f"<h1>Consortium {html.escape(report['consortium'][:16])}</h1>"
            "<p>Each site's final model on its own validation rows; no patient data left any site.</p>"
            f"<table><tr>{heads}</tr>{body}</table>{chosen}{images}</body></html>")
    from p2pfl.atomic import write_atomic

    write_atomic(path, page)


def _curve_png(report: dict, key: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for site in report["sites"]:
        values = site.get("history", {}).get(key) or []
        points = [(r + 1, v) for r, v in enumerate(values) if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=site["name"])
    ax.set(xlabel="round", ylabel=title, ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"
