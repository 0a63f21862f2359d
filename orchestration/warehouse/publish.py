"""Publishing a load into an existing table exactly once: a ledger intent, then MOVE PARTITION.

A load is written into a table of its own with the target's structure (`CREATE TABLE … AS target`).
Before publishing, its intent (target, load key, that table, its rows) goes to the ledger; publishing
then moves the rows in (`ALTER TABLE … MOVE PARTITION`, atomic per partition) and drops the emptied
table. A later attempt of the same load that finds an intent looks at the load's table: gone or
empty means published; still holding rows means the earlier attempt stopped before or during the
move, which is then finished. The moves run inside the warehouse, whatever happens to the worker.

Used by pipeline loads (orchestration.movement.engine) and file imports into tables without the
per-file partition (orchestration.storage.importer). ClickHouse's insert_deduplication_token does
not do this job: in ClickHouse 26.9 the block ids of an INSERT … SELECT depend on how its source was
cut into chunks, which differs between two reads of the same data.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from orchestration.lib.sql import qualified_name, split_qualified, string_literal

# its own database: aetl_staging holds disposable tables (the orphaned-data clean-up drops old ones),
# while an intent must outlive any retry of its load
LEDGER_DATABASE = "aetl_loads"
LEDGER = qualified_name("load_ledger", LEDGER_DATABASE)
LEDGER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER} (target String, load_key String, stage String, rows UInt64, "
    "at DateTime64(6) DEFAULT now64(6)) ENGINE = MergeTree ORDER BY (target, load_key) "
    "TTL toDateTime(at) + INTERVAL 90 DAY"
)


class IncompleteMove(RuntimeError):
    """Moving a load's partitions left rows behind; its table is kept for a retry to finish."""


MISSING_MARKS = ("UNKNOWN_TABLE", "UNKNOWN_DATABASE", "doesn't exist", "does not exist")


def missing(error: ClickHouseError) -> bool:
    """The error says a table or database does not exist."""
    text = str(error)
    return any(mark in text for mark in MISSING_MARKS)


def write_intent(client: Any, target: str, load_key: str, stage: str, rows: int) -> None:
    """Record that `stage` (rows) is about to be published into `target` (qualified names)."""
    insert = (
        f"INSERT INTO {LEDGER} (target, load_key, stage, rows) VALUES "
        f"({string_literal(target)}, {string_literal(load_key)}, {string_literal(stage)}, {int(rows)})"
    )
    try:
        client.command(insert)
    except ClickHouseError as error:
        if not missing(error):
            raise
        client.command(f"CREATE DATABASE IF NOT EXISTS {LEDGER_DATABASE}")
        client.command(LEDGER_DDL)
        client.command(insert)


def last_intent(client: Any, target: str, load_key: str) -> tuple[str, int] | None:
    """(load's table, rows) of the newest intent of this load, or None when it never got that far."""
    try:
        row = client.query(
            f"SELECT count(), argMax(stage, at), argMax(rows, at) FROM {LEDGER} "
            "WHERE target = {t:String} AND load_key = {k:String}",
            parameters={"t": target, "k": load_key},
        ).result_rows[0]
    except ClickHouseError as error:
        if missing(error):
            return None  # no ledger yet: nothing was ever published this way
        raise
    return (str(row[1]), int(row[2])) if row[0] else None


def rows_left(client: Any, stage: str) -> int:
    """Rows still in a load's table; 0 when it is gone."""
    try:
        return int(client.command(f"SELECT count() FROM {stage}"))
    except ClickHouseError as error:
        if missing(error):
            return 0
        raise


def move_rows(client: Any, stage: str, target: str, engine: str, partition_key: str | None = None) -> None:
    """Every partition of the load's table into the target (each move is atomic), then the empty table
    is dropped; a target that is not a MergeTree gets the rows by INSERT … SELECT. `partition_key`
    "" (known: not partitioned) saves looking the partitions up: there is only `all`."""
    if "MergeTree" in engine:
        partitions: list[Any] = [("all",)] if partition_key == "" else _partitions(client, stage)
        for (partition,) in partitions:
            partition_sql = string_literal(partition)
            client.command(f"ALTER TABLE {stage} MOVE PARTITION ID {partition_sql} TO TABLE {target}")
        # the table goes only once it is empty: rows a move did not take (a partition that was not
        # listed) stay for the retry instead of being dropped with it
        left = rows_left(client, stage)
        if left:
            raise IncompleteMove(f"{left} rows still in {stage} after moving {len(partitions)} partitions")
    else:
        client.command(f"INSERT INTO {target} SELECT * FROM {stage}")
    # gone at once for every reader (Atomic database); its empty folder is removed in the background
    client.command(f"DROP TABLE IF EXISTS {stage}")


def _partitions(client: Any, stage: str) -> list[Any]:
    database, table = split_qualified(stage)
    return list(
        client.query(
            "SELECT DISTINCT partition_id FROM system.parts "
            "WHERE database = {db:String} AND table = {t:String} AND active",
            parameters={"db": database or client.database or "default", "t": table},
        ).result_rows
    )


def finish_earlier_attempt(client: Any, target: str, load_key: str, engine: str) -> int | None:
    """None when this load was never about to be published; else the rows it publishes now (0 when an
    earlier attempt had published them, its rows when that attempt stopped before or while moving)."""
    intent = last_intent(client, target, load_key)
    if intent is None:
        return None
    stage, rows = intent
    if rows_left(client, stage) == 0:
        return 0
    move_rows(client, stage, target, engine)
    return rows


def table_engine(client: Any, qualified: str) -> str:
    database, table = split_qualified(qualified)
    rows = client.query(
        "SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database or client.database or "default", "t": table},
    ).result_rows
    return str(rows[0][0]) if rows else ""


# The tables a load or an import fills before publishing them (see orchestration.movement.engine and
# orchestration.storage.importer): `<table>__load_<load key>` (`_2`: a first load that raced another),
# `<table>__staging_<8 hex>` (a replace) and `<table>__import_<10 hex>` (a file import). Each is
# created with a comment that starts with LOAD_TABLE_MARK (load_table_comment): the sweep below drops
# only tables that carry it, never a user's table that merely has a name like theirs.
LOAD_TABLE_MARK = "aetl load"


def load_table_comment(key: str) -> str:
    """The COMMENT clause of a load's own table (`CREATE TABLE … AS target COMMENT …` overrides the
    comment it would copy from the target)."""
    return f"COMMENT {string_literal(f'{LOAD_TABLE_MARK} {key}')}"


LOAD_TABLE_PATTERN = r"__(load_[0-9a-f]{12}(_2)?|staging_[0-9a-f]{8}|import_[0-9a-f]{10})$"
NOT_USER_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema", LEDGER_DATABASE)


def quiet_tables(
    client: Any, condition: str, parameters: dict[str, Any], older_than_seconds: int
) -> list[tuple[str, str, int, int]]:
    """[(database, name, bytes, rows)] of the tables matching `condition` (SQL over system.tables'
    columns, with `parameters`) that nothing has touched for `older_than_seconds`: neither their
    definition nor their data (a load still inserting adds parts; a load that runs longer than the
    age is not abandoned) and that no running query names (an insert between two parts)."""
    rows = client.query(
        "SELECT t.database, t.name, coalesce(t.total_bytes, 0), coalesce(t.total_rows, 0) "
        "FROM system.tables AS t LEFT JOIN (SELECT database, table, max(modification_time) AS changed "
        "FROM system.parts GROUP BY database, table) AS p ON p.database = t.database AND p.table = t.name "
        f"WHERE ({condition}) AND NOT t.is_temporary "
        "AND greatest(t.metadata_modification_time, p.changed) <= now() - toIntervalSecond({age:UInt32})",
        parameters={**parameters, "age": older_than_seconds},
    ).result_rows
    if not rows:
        return []
    running = [str(r[0]) for r in client.query("SELECT query FROM system.processes").result_rows]
    return [
        (str(database), str(name), int(size), int(count))
        for database, name, size, count in rows
        if not any(str(name) in query for query in running)
    ]


def abandoned_load_tables(
    client: Any, older_than_seconds: int
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Load tables (named by LOAD_TABLE_PATTERN and marked by LOAD_TABLE_MARK) left behind by attempts
    that stopped and were never retried, untouched for `older_than_seconds` (quiet_tables):
    ([(database, name, bytes)] safe to drop, [database.name] kept). A table that an intent in the
    ledger names and that still holds rows is kept: its load decided to publish it, and a retry of
    that load finishes the move. Every other one was never going to be published as it is (a retry
    replaces it) or was published already (it is empty)."""
    rows = quiet_tables(
        client,
        "t.database NOT IN {skip:Array(String)} AND match(t.name, {pattern:String}) "
        "AND startsWith(t.comment, {mark:String})",
        {"skip": list(NOT_USER_DATABASES), "pattern": LOAD_TABLE_PATTERN, "mark": LOAD_TABLE_MARK},
        older_than_seconds,
    )
    if not rows:
        return [], []
    try:
        intents = {str(r[0]) for r in client.query(f"SELECT DISTINCT stage FROM {LEDGER}").result_rows}
    except ClickHouseError as error:
        if not missing(error):
            raise
        intents = set()
    default_db = client.database or "default"
    drop: list[tuple[str, str, int]] = []
    kept: list[str] = []
    for database, name, size, count in rows:
        names = {qualified_name(name, database)}
        if database == default_db:
            names.add(qualified_name(name))  # an intent written without the database
        if names & intents and count > 0:
            kept.append(f"{database}.{name}")
        else:
            drop.append((database, name, size))
    return drop, kept
