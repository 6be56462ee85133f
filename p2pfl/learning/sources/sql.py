"""A hospital's own table in a database, `sql:URL` (SQLAlchemy): the rows of a query, in the
query's order, with the columns of a csv table (label, features, optional site).

The URL names the database without a password (`sql:postgresql+psycopg://tester@host:5432/db`,
`sql:sqlite:///hospital.db`, a relative sqlite file taken beside node.toml or the experiment
file). Options (settings keys): `sql_query` (a SELECT) or `sql_table`, exactly one; and
`password_env`, the environment variable that holds the password. The password never comes
from a file and is never shown in a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import DataSource, RawRows, Request
from p2pfl.learning.sources._columns import tabular

QUERY, TABLE, PASSWORD_ENV = "sql_query", "sql_table", "password_env"
_SELECT = re.compile(r"\s*(\(\s*)*(select|with|values)\b", re.IGNORECASE)


def check_query(query: str) -> None:
    """Refuse a query that is not a SELECT (the settings check and the loader both call this)."""
    if query.strip() and not _SELECT.match(query):
        raise LearningSettingError(f"must be a SELECT query, got {query.split()[0]!r}")


def _url(argument: str) -> Any:
    """The parsed SQLAlchemy URL; refused when it holds a password (password_env is the way)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(argument)
    except (ArgumentError, ValueError):  # the text is not echoed: it might hold a password
        raise LearningSettingError("data source sql: not a database URL (e.g. sql:sqlite:///hospital.db "
                                   "or sql:postgresql+psycopg://user@host:5432/db)") from None
    if url.password is not None:
        raise LearningSettingError(f"data source sql:{url.render_as_string(hide_password=True)}: the URL "
                                   f"holds a password; leave it out and name the environment variable "
                                   f"that holds it with {PASSWORD_ENV}")
    return url


def _sqlite_file(url: Any) -> str | None:
    """The file of an sqlite URL, None for another database or an in-memory one."""
    db = url.database
    if not url.drivername.startswith("sqlite") or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return db


def relocate(argument: str, base: Path) -> str:
    """The URL with a relative sqlite file taken relative to `base`; other URLs unchanged."""
    try:
        url = _url(argument)
    except LearningSettingError:
        return argument  # the loader reports it
    db = _sqlite_file(url)
    if db is None or Path(db).is_absolute():
        return argument
    return url.set(database=(base / db).as_posix()).render_as_string(hide_password=False)


def _statement(options: Mapping[str, str], where: str, quote: Any) -> str:
    query, table = options.get(QUERY, "").strip(), options.get(TABLE, "").strip()
    if bool(query) == bool(table):
        raise LearningSettingError(f"{where}: set {QUERY} (a SELECT) or {TABLE}, exactly one of them")
    if query:
        try:
            check_query(query)
        except LearningSettingError as exc:
            raise LearningSettingError(f"{where}: {QUERY} {exc}") from None
        return query
    return "SELECT * FROM " + ".".join(quote(part) for part in table.split("."))


def _password(options: Mapping[str, str], where: str) -> str | None:
    name = options.get(PASSWORD_ENV, "")
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise LearningSettingError(f"{where}: {PASSWORD_ENV} names the environment variable {name!r}, "
                                   "which is not set")
    return value


def _read(request: Request) -> RawRows:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = _url(request.argument)
    where = f"sql:{url.render_as_string(hide_password=True)}"
    db = _sqlite_file(url)
    if db is not None and not Path(db).is_file():
        raise LearningSettingError(f"{where}: no such file {db}")  # sqlite would create an empty one
    password = _password(request.options, where)
    if password is not None:
        url = url.set(password=password)

    def failed(exc: BaseException) -> LearningSettingError:
        """One line: the database's own message (first line), the password blotted out."""
        text = str(getattr(exc, "orig", None) or exc).strip()
        line = text.splitlines()[0] if text else type(exc).__name__
        if password:
            line = line.replace(password, "***")
        return LearningSettingError(f"{where}: {line}")

    try:
        engine = sa.create_engine(url, poolclass=NullPool)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise failed(exc) from None
    statement = _statement(request.options, where, engine.dialect.identifier_preparer.quote)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(postgresql_readonly=True)
            result = conn.execute(sa.text(statement))
            header = [str(k) for k in result.keys()]
            rows = list(enumerate((tuple(r) for r in result), start=1))
    except sa.exc.SQLAlchemyError as exc:
        raise failed(exc) from None
    finally:
        engine.dispose()
    return RawRows(where, header, rows, lambda n: f"{where}, row {n}")


COMPONENT = DataSource(
    name="sql",
    summary="a hospital's own database table or query (SQLAlchemy URL without password; "
            "data.sql_query or data.sql_table, data.password_env); needs task.classes in the plan",
    shared=False,
    load=tabular("sql", _read),
    read=_read,
    argument="URL",
    required=True,
    options=(QUERY, TABLE, PASSWORD_ENV),
    relocate=relocate,
)
