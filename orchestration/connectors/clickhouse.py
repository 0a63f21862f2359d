"""ClickHouse sources: the platform's own warehouse (no host) or any ClickHouse by host and port."""

from __future__ import annotations

import time
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from orchestration.connectors.base import (
    ColumnInfo,
    ConnectorFailure,
    IndexInfo,
    TableRef,
    TableSchema,
    TestReport,
    check_table_name,
    probe_tcp,
)
from orchestration.connectors.config import ClickHouseConfig
from orchestration.warehouse.client import default_url, get_client


def client_for(config: ClickHouseConfig, *, timeout: int | None = None) -> Client:
    """A client; the platform's warehouse uses its own URL (and its password, from the settings)."""
    seconds = timeout or config.connect_timeout
    try:
        if config.is_platform_warehouse:
            return get_client(
                default_url(),
                connect_timeout=seconds,
                send_receive_timeout=300,
                autogenerate_session_id=False,
            )
        assert config.host is not None
        return get_client(
            f"{'https' if config.secure else 'http'}://{config.host}:{config.http_port}",
            username=config.username or "default",
            password=config.password.get_secret_value() if config.password else "",
            database=config.database,
            connect_timeout=seconds,
            send_receive_timeout=300,
            autogenerate_session_id=False,
        )
    except ClickHouseError as error:
        raise _classify(error, config) from None


def _classify(error: Exception, config: ClickHouseConfig) -> ConnectorFailure:
    text = str(error)
    if "AUTHENTICATION_FAILED" in text or "Code: 516" in text or "Authentication failed" in text:
        return ConnectorFailure(
            "auth", f"authentication failed for user {config.username or 'default'!r}", step="authenticate"
        )
    if "UNKNOWN_DATABASE" in text or "Code: 81" in text:
        return ConnectorFailure(
            "database_missing", f"database {config.database!r} does not exist", step="database"
        )
    if "timed out" in text.lower():
        return ConnectorFailure("timeout", f"{config.describe()} did not answer in time")
    return ConnectorFailure(
        "unknown", f"ClickHouse error: {text.splitlines()[0][:300] if text else type(error).__name__}"
    )


def _host_port(config: ClickHouseConfig) -> tuple[str, int]:
    if config.host is not None:
        return config.host, config.http_port
    from urllib.parse import urlsplit

    parts = urlsplit(default_url())
    return parts.hostname or "127.0.0.1", parts.port or 8123


def test_connection(config: ClickHouseConfig) -> TestReport:
    started = time.monotonic()
    details: dict[str, Any] = probe_tcp(*_host_port(config), min(config.connect_timeout, 4.0))
    client = client_for(config, timeout=4)
    try:
        details["authentication_successful"] = True
        version = client.command("SELECT version()")
        exists = client.command(
            "SELECT count() FROM system.databases WHERE name = {d:String}", parameters={"d": config.database}
        )
        if not int(str(exists)):
            raise ConnectorFailure(
                "database_missing", f"database {config.database!r} does not exist", step="database"
            )
        details["database_exists"] = True
        details["query_execution_successful"] = True
    except ClickHouseError as error:
        raise _classify(error, config) from None
    finally:
        client.close()
    return TestReport((time.monotonic() - started) * 1000, details, str(version))


def _query(config: ClickHouseConfig, statement: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
    client = client_for(config)
    try:
        return [tuple(r) for r in client.query(statement, parameters=parameters).result_rows]
    except ClickHouseError as error:
        raise _classify(error, config) from None
    finally:
        client.close()


def list_tables(config: ClickHouseConfig) -> list[TableRef]:
    rows = _query(
        config,
        "SELECT name, engine, total_rows FROM system.tables WHERE database = {d:String} "
        "AND NOT startsWith(name, '.inner') ORDER BY name",
        {"d": config.database},
    )
    return [
        TableRef(name, config.database, "view" if "View" in engine else "table", rows, rows is not None)
        for name, engine, rows in rows
    ]


def describe_table(config: ClickHouseConfig, table: str) -> TableSchema:
    schema, name = check_table_name(table)
    database = schema or config.database
    tables = _query(
        config,
        "SELECT total_rows, primary_key, sorting_key FROM system.tables "
        "WHERE database = {d:String} AND name = {t:String}",
        {"d": database, "t": name},
    )
    if not tables:
        raise ConnectorFailure("table_missing", f"table {database}.{name} does not exist", step="query")
    total_rows, primary_key, sorting_key = tables[0]
    columns = _query(
        config,
        "SELECT name, type, is_in_primary_key, default_expression FROM system.columns "
        "WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        {"d": database, "t": name},
    )
    primary = [c.strip() for c in str(primary_key).split(",") if c.strip()]
    indexes = []
    if sorting_key:
        indexes.append(
            IndexInfo("sorting_key", [c.strip() for c in str(sorting_key).split(",")], primary=True)
        )
    if total_rows is None:
        counted = _query(config, f"SELECT count() FROM `{database}`.`{name}`", {})
        total_rows, exact, method = int(counted[0][0]), True, "count()"
    else:
        exact, method = True, "system.tables.total_rows (exact for MergeTree tables)"
    return TableSchema(
        table_name=table,
        columns=[ColumnInfo(c, t, t, primary_key=bool(pk), default=d or None) for c, t, pk, d in columns],
        primary_key=primary,
        indexes=indexes,
        row_count=int(total_rows),
        row_count_exact=exact,
        row_count_method=method,
    )


def column_infos(config: ClickHouseConfig, select: str) -> list[ColumnInfo]:
    client = client_for(config)
    try:
        rows = client.query(f"DESCRIBE ({select})").result_rows
    except ClickHouseError as error:
        raise ConnectorFailure(
            "query", f"ClickHouse query failed: {str(error).splitlines()[0][:300]}", step="query"
        ) from None
    finally:
        client.close()
    return [ColumnInfo(r[0], r[1], r[1], str(r[1]).startswith("Nullable(")) for r in rows]
