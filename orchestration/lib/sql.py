"""SQL safety for ClickHouse statements built from code (identifiers are quoted, never interpolated raw)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def quote_identifier(name: str) -> str:
    """Back-quoted ClickHouse identifier; `db.table` stays one identifier (use qualified_name for two)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def string_literal(value: str) -> str:
    """A ClickHouse string literal: backslashes and single quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified_name(table: str, database: str | None = None) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}" if database else quote_identifier(table)


def split_qualified(qualified: str) -> tuple[str | None, str]:
    """(database, table) of a name made by qualified_name (or a plain `db.table`, no quotes); database
    None when it has none."""
    if "`" not in qualified and qualified.count(".") == 1:
        database, table = qualified.split(".")
        return database, table
    parts = qualified.strip("`").split("`.`")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def table_swap_statements(table: str, staging: str, database: str | None = None) -> list[str]:
    """Publish a loaded staging table: readers see the old rows or the new ones, never an empty table."""
    target, stage = qualified_name(table, database), qualified_name(staging, database)
    return [f"EXCHANGE TABLES {stage} AND {target}", f"DROP TABLE IF EXISTS {stage} SYNC"]


def settings_sql(settings: Mapping[str, Any]) -> str:
    """`name = value, …` of a SETTINGS clause (strings quoted, numbers and booleans as integers)."""
    parts = []
    for key, value in settings.items():
        literal = string_literal(value) if isinstance(value, str) else str(int(value))
        parts.append(f"{key} = {literal}")
    return ", ".join(parts)
