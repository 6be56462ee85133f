"""A hospital's own table as a Parquet file, `parquet:PATH` (read with pyarrow): the columns of a
CSV table (label, features, optional site), typed; never partitioned."""

from __future__ import annotations

from pathlib import Path

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import FeatureSchema
from p2pfl.learning.sources import DataSource, RawRows, Request, Table
from p2pfl.learning.sources._columns import tabular, to_table


def read_rows(path: Path) -> RawRows:
    """The column names and rows of a Parquet file; a row is named by its 1-based data row."""
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
    rows = list(enumerate(zip(*columns, strict=True), start=1))
    return RawRows(str(path), data.column_names, rows, lambda n: f"{path}, row {n}")


def read_parquet(path: Path, label_column: str = "label", site_column: str | None = None,
                 classes: list[str] | None = None, name: str = "",
                 schema: FeatureSchema | None = None) -> Table:
    """The table of a Parquet file; errors name the file, the 1-based data row and the column."""
    raw = read_rows(path)
    return to_table(name or f"parquet:{path}", raw.where, raw.header, raw.rows, label_column,
                    site_column, classes, raw.row_name, schema)


def _read(request: Request) -> RawRows:
    return read_rows(Path(request.argument))


COMPONENT = DataSource(
    name="parquet",
    summary="a hospital's own Parquet file (the columns of a csv table, typed); "
            "needs task.classes in the plan",
    shared=False,
    load=tabular("parquet", _read),
    read=_read,
    argument="PATH",
    required=True,
    path=True,
)
