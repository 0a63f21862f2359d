"""Connectors: typed configurations, connection tests, introspection and readers per source type.

Importable by the API without Dagster. `test_connection`, `list_tables` and `describe_table` dispatch
on the configuration's type; the engine (orchestration.movement) uses the per-type readers.
"""

from __future__ import annotations

from orchestration.connectors import clickhouse, files, mysql, postgres
from orchestration.connectors.base import (
    ColumnInfo,
    ConnectorFailure,
    IndexInfo,
    InvalidTableName,
    TableRef,
    TableSchema,
    TestReport,
)
from orchestration.connectors.config import (
    MASK,
    ClickHouseConfig,
    ConnectorConfig,
    ConnectorConfigError,
    ConnectorType,
    FileConfig,
    MySQLConfig,
    PostgresConfig,
    parse_connector_config,
)

__all__ = [
    "MASK",
    "ClickHouseConfig",
    "ColumnInfo",
    "ConnectorConfig",
    "ConnectorConfigError",
    "ConnectorFailure",
    "ConnectorType",
    "FileConfig",
    "IndexInfo",
    "InvalidTableName",
    "MySQLConfig",
    "PostgresConfig",
    "TableRef",
    "TableSchema",
    "TestReport",
    "describe_table",
    "list_tables",
    "parse_connector_config",
    "test_connection",
]


def test_connection(config: ConnectorConfig) -> TestReport:
    """Connect, authenticate and run one query; raises ConnectorFailure saying which step failed."""
    if isinstance(config, PostgresConfig):
        return postgres.test_connection(config)
    if isinstance(config, MySQLConfig):
        return mysql.test_connection(config)
    if isinstance(config, ClickHouseConfig):
        return clickhouse.test_connection(config)
    return files.test_connection(config)


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def list_tables(config: ConnectorConfig) -> list[TableRef]:
    if isinstance(config, PostgresConfig):
        return postgres.list_tables(config)
    if isinstance(config, MySQLConfig):
        return mysql.list_tables(config)
    if isinstance(config, ClickHouseConfig):
        return clickhouse.list_tables(config)
    return files.list_tables(config)


def describe_table(config: ConnectorConfig, table: str) -> TableSchema:
    """Columns (with ClickHouse types), nullability, primary key, indexes and row count of one table."""
    if isinstance(config, PostgresConfig):
        return postgres.describe_table(config, table)
    if isinstance(config, MySQLConfig):
        return mysql.describe_table(config, table)
    if isinstance(config, ClickHouseConfig):
        return clickhouse.describe_table(config, table)
    return files.describe_table(config, table)
