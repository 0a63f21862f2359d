"""Source systems for connector and movement tests: PostgreSQL and MariaDB databases with known rows,
and files under the configured file root. Reusable by the pipeline end-to-end tests (the ai-etl
example: PostgreSQL `transactions` → ClickHouse `daily_sales`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pymysql  # type: ignore[import-untyped]

from orchestration.lib.pg import drop_pg_database, ensure_pg_database

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306


@dataclass
class PgSource:
    url: str
    database: str
    # a login role with a password, as a real connector would use
    username: str
    password: str

    def connector_config(self) -> dict[str, object]:
        return {"host": "127.0.0.1", "port": 5432, "database": self.database}

    def credentials(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}

    def execute(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []


@contextlib.contextmanager
def postgres_source() -> Iterator[PgSource]:
    """A fresh PostgreSQL database and a password-protected role that owns it; both dropped after."""
    name = f"aetl_src_{uuid.uuid4().hex[:10]}"
    role = f"aetl_etl_{uuid.uuid4().hex[:8]}"
    password = f"Pw_{secrets.token_hex(12)}"
    url = f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    ensure_pg_database(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        conn.execute(f"ALTER SCHEMA public OWNER TO {role}")
    try:
        yield PgSource(url, name, role, password)
    finally:
        drop_pg_database(url)
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def transaction_rows(
    count: int, start_id: int = 1, start_day: dt.date = dt.date(2025, 9, 1)
) -> list[tuple[object, ...]]:
    """Deterministic sales transactions: some refunds (amount <= 0), spread over 30 days."""
    rows = []
    for i in range(start_id, start_id + count):
        day = start_day + dt.timedelta(days=i % 30)
        amount = Decimal((i * 37) % 1000 - 100) / Decimal(4)
        created = dt.datetime.combine(day, dt.time(hour=i % 24, minute=i % 60), tzinfo=dt.UTC)
        rows.append((i, f"customer_{i % 97}", amount.quantize(Decimal("0.01")), day, created, i % 7 != 0))
    return rows


def create_transactions_table(source: PgSource, rows: int = 1000, *, table: str = "transactions") -> None:
    """The ai-etl spec's example source: `transactions(id, customer, amount, date, created_at, paid)`."""
    with psycopg.connect(source.url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, customer text NOT NULL, "
            f"amount numeric(10,2) NOT NULL, date date NOT NULL, created_at timestamptz NOT NULL, "
            f"paid boolean)"
        )
        conn.execute(f"CREATE INDEX idx_{table}_date ON {table}(date)")
        conn.execute(f"ALTER TABLE {table} OWNER TO {source.username}")
        add_transactions(source, transaction_rows(rows), table=table)


def add_transactions(
    source: PgSource, rows: list[tuple[object, ...]], *, table: str = "transactions"
) -> None:
    columns = "id, customer, amount, date, created_at, paid"
    with (
        psycopg.connect(source.url, autocommit=True) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


@dataclass
class MySQLSource:
    database: str
    username: str
    password: str

    def connector_config(self) -> dict[str, object]:
        return {"host": MYSQL_HOST, "port": MYSQL_PORT, "database": self.database}

    def credentials(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}

    def execute(
        self, statement: str, args: tuple[object, ...] | list[tuple[object, ...]] = ()
    ) -> list[tuple[object, ...]]:
        conn = pymysql.connect(
            host=MYSQL_HOST, port=MYSQL_PORT, user="root", database=self.database, autocommit=True
        )
        try:
            with conn.cursor() as cursor:
                if isinstance(args, list):
                    cursor.executemany(statement, args)
                    return []
                cursor.execute(statement, args)
                return list(cursor.fetchall())
        finally:
            conn.close()


def _mysql_root() -> pymysql.connections.Connection:
    # MariaDB on this machine: root without a password over TCP from localhost
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", autocommit=True)


@contextlib.contextmanager
def mysql_source() -> Iterator[MySQLSource]:
    """A fresh MariaDB database and a user with a password limited to it; both dropped after."""
    name = f"aetl_src_{uuid.uuid4().hex[:10]}"
    user = f"etl_{uuid.uuid4().hex[:8]}"
    password = f"My_{secrets.token_hex(12)}"
    conn = _mysql_root()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cursor.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'")
            cursor.execute(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'")
            cursor.execute(f"GRANT ALL ON `{name}`.* TO '{user}'@'localhost'")
        yield MySQLSource(name, user, password)
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
        conn.close()


def create_mysql_transactions(source: MySQLSource, rows: int = 1000) -> None:
    source.execute(
        "CREATE TABLE transactions (id bigint PRIMARY KEY, customer varchar(64) NOT NULL, "
        "amount decimal(10,2) NOT NULL, "
        "date date NOT NULL, created_at datetime(6) NOT NULL, paid tinyint(1), KEY idx_date (date))"
    )
    data = [(i, c, a, d, ts.replace(tzinfo=None), int(p)) for i, c, a, d, ts, p in transaction_rows(rows)]
    source.execute("INSERT INTO transactions VALUES (%s, %s, %s, %s, %s, %s)", data)


@contextlib.contextmanager
def import_folder(root: Path) -> Iterator[Path]:
    """A fresh folder under the file root (AETL_FILE_ROOTS / $AETL_DATA_DIR/imports), removed after."""
    import shutil

    folder = root / f"test_{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
