"""A hospital's own table as a Parquet file, `parquet:PATH` (read with pyarrow): the columns of a
CSV table (label, numeric features, optional site), typed; never partitioned."""

from __future__ import annotations

from pathlib import Path

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import DataSource, Request, Table
from p2pfl.learning.sources._columns import to_table


def read_parquet(path: Path, label_column: str = "label", site_column: str | None = None,
                 classes: list[str] | None = None, name: str = "") -> Table:
    """The table of a Parquet file; errors name the file, the 1-based data row and the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise LearningSettingError(f"{path}: no such file")
    try:
        data = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LearningSettingError(f"{path}: not a readable Parquet file: {first}") from None
    columns = [data.column(i).to_pylist() for i in range(data.num_columns)]
    rows = enumerate(zip(*columns, strict=True), start=1)
    return to_table(name or f"parquet:{path}", str(path), data.column_names, rows,
                    label_column, site_column, classes)


def _load(request: Request) -> Table:
    return read_parquet(Path(request.argument), request.label_column, request.site_column,
                        request.classes, name=f"parquet:{request.argument}")


COMPONENT = DataSource(
    name="parquet",
    summary="a hospital's own Parquet file (the columns of a csv table, typed); "
            "needs data.classes on a node",
    shared=False,
    load=_load,
    argument="PATH",
    required=True,
    path=True,
)
