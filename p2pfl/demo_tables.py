"""`p2pfl demo --dataset csv:PATH`: one table dealt out to the demo's hospitals, and its plan.

The rows are shuffled (seeded) and dealt out in turn, so each hospital holds its own patients
in its own `data.csv`; the plan's task and features are drafted from the whole table
(p2pfl.learning.draft), as a consortium would write them after reviewing `p2pfl plan draft`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.learning.draft import Draft, draft_schema
from p2pfl.learning.sources import RawRows, table_rows

TABLE = "data.csv"  # each hospital's table, in its folder


def read_rows(spec: str) -> RawRows:
    """The raw rows of the table `spec` names (a relative path: from the current folder)."""
    return table_rows(spec, Path.cwd())


def deal_out(rows: RawRows, folders: list[Path], seed: int = 0) -> None:
    """Write each folder's share of the rows as TABLE (header first)."""
    if len(rows.rows) < 10 * len(folders):
        raise UserError(f"{rows.where}: {len(rows.rows)} rows are too few for {len(folders)} "
                        "hospitals (at least 10 each)")
    order = np.random.default_rng([seed, 0xDE40]).permutation(len(rows.rows))
    for k, folder in enumerate(folders):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(rows.header)
        for i in order[k::len(folders)]:
            writer.writerow(["" if v is None else v for v in rows.rows[i][1]])
        write_atomic(folder / TABLE, out.getvalue())


def draft(rows: RawRows, label_column: str) -> Draft:
    """The plan's task and features for this table."""
    return draft_schema(rows, label_column)
