"""A throwaway PostgreSQL server for the sql source's tests, one per test session.

initdb refuses to run as root: as root the server runs as the `postgres` user. It listens on a
free port of 127.0.0.1 only, keeps its socket in its temp folder, and is stopped and removed at
the end. Role `tester` connects without a password (trust); role `nurse` has a password and
must give it (scram-sha-256). Skipped only where PostgreSQL's initdb is not installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NURSE_PASSWORD = "n0t-in-any-file"


@dataclass(frozen=True)
class Postgres:
    port: int
    nurse_password: str = NURSE_PASSWORD

    def url(self, user: str = "tester", db: str = "hospital") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{db}"

    def execute(self, *statements: str) -> None:
        """Run statements as the superuser `tester` (autocommit)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="tester", dbname="hospital",
                             autocommit=True, connect_timeout=10) as conn:
            for statement in statements:
                conn.execute(statement)


def _bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else where Debian puts it."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (no initdb)")
    as_user: dict[str, object] = {}
    folder = Path(tempfile.mkdtemp(prefix="p2pfl-pg-"))
    if os.geteuid() == 0:  # initdb refuses root
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=60, cwd=folder, **as_user)

    data, port = folder / "db", _free_port()
    try:
        run(initdb, "-D", str(data), "-U", "tester", "-A", "trust", "--no-sync")
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all tester 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "30", "start")
        try:
            server = Postgres(port)
            import psycopg

            with psycopg.connect(host="127.0.0.1", port=port, user="tester", dbname="postgres",
                                 autocommit=True, connect_timeout=10) as conn:
                conn.execute("CREATE DATABASE hospital")
            server.execute(f"CREATE ROLE nurse LOGIN PASSWORD '{NURSE_PASSWORD}'")
            yield server
        finally:
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
    except subprocess.CalledProcessError as exc:
        log = folder / "log"
        detail = log.read_text()[-2000:] if log.exists() else exc.stderr.decode(errors="replace")
        raise RuntimeError(f"the test PostgreSQL server failed: {' '.join(exc.cmd)}\n{detail}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Patients:
    """The same rows as a CSV file, a Parquet file, an SQLite table and a PostgreSQL table."""

    header = ("a", "b", "outcome", "hospital")
    rows = [(round(i * 0.37 - 3.1, 4) + 1e-9 * i, i % 7, "yes" if i % 3 else "no", f"H{i % 3}")
            for i in range(60)]

    def csv(self, path: Path, rows: list[tuple] | None = None) -> str:
        lines = [",".join(self.header)] + [",".join(map(repr_field, r)) for r in (rows or self.rows)]
        path.write_text("\n".join(lines) + "\n")
        return f"csv:{path}"

    def parquet(self, path: Path, rows: list[tuple] | None = None) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = rows or self.rows
        pq.write_table(pa.table({h: [r[i] for r in rows] for i, h in enumerate(self.header)}), path)
        return f"parquet:{path}"

    def sqlite(self, path: Path, rows: list[tuple] | None = None) -> str:
        import sqlite3

        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE patients (a REAL, b INTEGER, outcome TEXT, hospital TEXT)")
            conn.executemany("INSERT INTO patients VALUES (?, ?, ?, ?)", rows or self.rows)
        conn.close()
        return f"sql:sqlite:///{path}"

    def postgres(self, server: Postgres, table: str = "patients") -> str:
        values = ", ".join(f"({i}, {float(a)!r}, {b}, '{o}', '{h}')"
                           for i, (a, b, o, h) in enumerate(self.rows))
        server.execute(f"DROP TABLE IF EXISTS {table}",
                       f"CREATE TABLE {table} (id INTEGER, a DOUBLE PRECISION, b INTEGER, outcome TEXT, "
                       "hospital TEXT)",
                       f"INSERT INTO {table} VALUES {values}")
        return f"sql:{server.url()}"


    @staticmethod
    def assert_same_dataset(a: object, b: object) -> None:
        """The two datasets hold byte-identical arrays, the same feature names and classes."""
        for name in ("x_train", "y_train", "x_test", "y_test", "site_train"):
            left, right = getattr(a, name), getattr(b, name)
            assert left.dtype == right.dtype and left.shape == right.shape, name
            assert left.tobytes() == right.tobytes(), name
        assert a.feature_names == b.feature_names and a.n_classes == b.n_classes  # type: ignore[attr-defined]


def repr_field(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@pytest.fixture
def patients() -> Patients:
    return Patients()
