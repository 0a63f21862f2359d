"""Datamarts as dbt models: names, the checked SELECT, and the model files the API generates.

Pure functions (no I/O): the API validates a `source_query` with `analyze_query`, then writes
`render_model` / `render_properties` into the generated model folder (orchestration.dbt
`datamart_models_dir`); the `aetl_datamarts` code location names jobs and schedules the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
import yaml  # type: ignore[import-untyped]
from sqlglot import exp
from sqlglot.errors import ParseError

LOCATION = "aetl_datamarts"
ASSET_PREFIX = "datamarts"
# the folder inside the generated model path: fqn aetl.marts.generated.<name> (marts config applies)
MODEL_SUBDIR = ("marts", "generated")
TAG_DATAMART = "aetl/datamart"
TAG_CONCURRENT = "aetl/concurrent_mode"
TAG_TRIGGERED_BY = "aetl/triggered_by"
MAX_QUERY_CHARS = 100_000
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
# warehouse databases no datamart may read: the engine's own and the platform's internal ones
INTERNAL_DATABASES = frozenset({"system", "information_schema", "INFORMATION_SCHEMA"})
# statements that are not a plain read, at any depth
_FORBIDDEN_NODES = (
    exp.Insert,
    exp.Delete,
    exp.Update,
    exp.Drop,
    exp.Create,
    exp.Alter,
    exp.Command,
    exp.Into,
)
_JINJA = re.compile(r"\{[{%#]")


class QueryRejected(ValueError):
    """Why a source_query is not a datamart query; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TableRef:
    database: str | None
    table: str

    def qualified(self, default_database: str) -> tuple[str, str]:
        return (self.database or default_database, self.table)


@dataclass(frozen=True)
class QueryAnalysis:
    tables: tuple[TableRef, ...]
    statement: Any  # a sqlglot Query


def asset_key(name: str) -> tuple[str, str]:
    return (ASSET_PREFIX, name)


def job_name(name: str) -> str:
    return f"datamart_{name}"


def schedule_name(name: str) -> str:
    return f"datamart_{name}_refresh"


def source_name(name: str, database: str) -> str:
    """Each datamart declares its own dbt sources, one per database (two datamarts may read one table)."""
    return f"datamart_{name}__{database}"


def source_call(name: str, database: str, table: str) -> str:
    return f"{{{{ source('{source_name(name, database)}', '{table}') }}}}"


def analyze_query(sql: str) -> QueryAnalysis:
    """One SELECT (with CTEs, unions, subqueries), no table functions, no jinja; its tables."""
    if len(sql) > MAX_QUERY_CHARS:
        raise QueryRejected(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if _JINJA.search(sql):
        raise QueryRejected("the query may not contain '{{', '{%' or '{#' (dbt would render them)")
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        raise QueryRejected(
            f"the query does not parse: {first.get('description', 'syntax error')} "
            f"(line {first.get('line', '?')}, column {first.get('col', '?')})"
        ) from None
    if len(statements) != 1:
        raise QueryRejected(f"exactly one statement is allowed, got {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise QueryRejected("only a SELECT is allowed")
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise QueryRejected(f"only a SELECT is allowed, found {node.key.upper()}")
    cte_names = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    tables: list[TableRef] = []
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise QueryRejected("table functions are not allowed; read tables by name")
        database = table.db or None
        if table.catalog:
            raise QueryRejected(f"not a warehouse table: {table.sql(dialect='clickhouse')}")
        if database is None and table.name in cte_names:
            continue
        ref = TableRef(database, table.name)
        if ref not in tables:
            tables.append(ref)
    if not tables:
        raise QueryRejected("the query reads no table")
    return QueryAnalysis(tuple(tables), statement)


def model_sql(analysis: QueryAnalysis, placeholders: Mapping[TableRef, str], default_database: str) -> str:
    """The SELECT with every input table replaced by its dbt `source()`/`ref()` call (lineage)."""
    statement = analysis.statement.copy()
    marks: dict[str, str] = {}
    for index, table in enumerate(list(statement.find_all(exp.Table))):
        ref = TableRef(table.db or None, table.name)
        call = placeholders.get(ref)
        if call is None:
            continue  # a CTE
        mark = f"aetl_input_{index}_"
        marks[mark] = call
        alias = table.args.get("alias")
        replacement = exp.Table(this=exp.to_identifier(mark))
        if alias is not None:
            replacement.set("alias", alias)
        table.replace(replacement)
    text = statement.sql(dialect="clickhouse", pretty=True)
    for mark, call in marks.items():
        text = text.replace(mark, call)
    return text


def render_model(name: str, select_sql: str, *, materialized: bool, version: int) -> str:
    config = {
        "materialized": "table" if materialized else "view",
        "tags": ["datamart", "generated"],
        "meta": {"dagster": {"asset_key": list(asset_key(name))}, "aetl_version": version},
    }
    if materialized:
        # the table's sort key: no key, rows in insertion order (a datamart is read whole or filtered)
        config["order_by"] = "tuple()"
    # the description lives in the .yml only: dbt renders jinja in SQL comments too
    header = (
        f"-- Generated by the AI-ETL API (datamart `{name}`, version {version}); edits are overwritten.\n"
    )
    arguments = ", ".join(f"{key}={value!r}" for key, value in config.items())
    return f"{header}{{{{ config({arguments}) }}}}\n\n{select_sql}\n"


def render_properties(
    name: str,
    *,
    description: str | None,
    columns: Sequence[tuple[str, str]],
    inputs: Sequence[tuple[TableRef, str, tuple[str, ...]]],
    key_columns: Sequence[str],
) -> str:
    """The model's .yml: docs, basic tests, and its inputs as a dbt source carrying the Dagster key.

    `inputs`: (table, database, upstream asset key) for pipeline targets; `columns`: (name, type).
    """
    column_docs: list[dict[str, Any]] = []
    for column, column_type in columns:
        entry: dict[str, Any] = {"name": column, "description": f"{column_type}"}
        if column in key_columns:
            entry["data_tests"] = ["not_null"]
        column_docs.append(entry)
    model: dict[str, Any] = {
        "name": name,
        "description": description or f"Datamart {name}",
        "columns": column_docs,
    }
    document: dict[str, Any] = {"version": 2, "models": [model]}
    by_database: dict[str, list[dict[str, Any]]] = {}
    for ref, database, key in inputs:
        by_database.setdefault(database, []).append(
            {"name": ref.table, "meta": {"dagster": {"asset_key": list(key)}}}
        )
    if by_database:
        document["sources"] = [
            {
                "name": source_name(name, database),
                "description": f"Warehouse tables datamart {name} reads from {database}",
                "schema": database,
                "tables": tables,
            }
            for database, tables in by_database.items()
        ]
    return yaml.safe_dump(document, sort_keys=False)


def key_columns(columns: Sequence[tuple[str, str]]) -> list[str]:
    """The grouping keys a not_null test fits: leading date/time and string columns."""
    keys = []
    for column, column_type in columns:
        base = column_type.removeprefix("LowCardinality(").removeprefix("Nullable(")
        if column_type.startswith("Nullable("):
            break
        if base.startswith(("Date", "String", "FixedString", "Enum")):
            keys.append(column)
        else:
            break
    return keys
