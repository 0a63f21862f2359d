"""Introspection of a connector, stored field mappings, schema comparison, mapping → pipeline SQL."""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from sqlalchemy.orm import Session
from sqlglot import exp

from api.activity.service import log_activity
from api.connectors import service as connector_service
from api.core.errors import NotFound, ValidationFailed
from api.db.models import User
from api.schema.models import SchemaMapping
from api.schema.schemas import CompareRequest, FieldMapping, MappingCreate, SchemaRef
from orchestration.connectors.config import FILE_TYPES
from orchestration.lib.sql import quote_identifier


def introspect(
    session: Session, connector_id: str, tables: list[str] | None, include_columns: bool, limit: int
) -> dict[str, Any]:
    row = connector_service.get_connector(session, connector_id)
    refs = connector_service.tables(row)
    wanted = set(tables or [])
    if wanted:
        names = {r.name for r in refs} | {f"{r.schema}.{r.name}" for r in refs if r.schema}
        missing = sorted(wanted - names)
        if missing:
            raise NotFound(
                f"Table not found: {missing[0]}", details={"connector_id": row.id, "missing": missing[:20]}
            )
        refs = [r for r in refs if r.name in wanted or f"{r.schema}.{r.name}" in wanted]
    out = []
    for ref in refs[:limit]:
        item: dict[str, Any] = {
            "name": ref.name,
            "schema_name": ref.schema,
            "kind": ref.kind,
            "row_count": ref.row_count,
            "row_count_exact": ref.row_count_exact,
            "row_count_method": "catalog statistics" if ref.row_count is not None else None,
        }
        if include_columns:
            qualified = (
                ref.name
                if not ref.schema or row.type in ("mysql", "clickhouse")
                else f"{ref.schema}.{ref.name}"
            )
            described = connector_service.table_schema(row, qualified)
            item.update(
                columns=[vars(c) for c in described.columns],
                indexes=[vars(i) for i in described.indexes],
                primary_key=described.primary_key,
                row_count=described.row_count,
                row_count_exact=described.row_count_exact,
                row_count_method=described.row_count_method,
            )
        out.append(item)
    return {
        "connector_id": row.id,
        "connector_type": row.type,
        "table_count": len(refs),
        "truncated": len(refs) > limit,
        "tables": out,
    }


def _auto_fields(session: Session, body: MappingCreate) -> list[dict[str, Any]]:
    row = connector_service.get_connector(session, body.source_connector_id)
    described = connector_service.table_schema(row, body.source_table)
    fields = []
    for column in described.columns:
        target = re.sub(r"[^A-Za-z0-9_]", "_", column.name).lower().strip("_") or "column"
        if target[0].isdigit():
            target = f"c_{target}"
        fields.append(
            {
                "source": column.name,
                "target": target[:63],
                "target_type": column.clickhouse_type,
                "expression": None,
            }
        )
    return fields


def _check_expression(expression: str, field: str) -> None:
    """One ClickHouse expression (no statement, no subquery): what a mapped column may compute."""
    try:
        parsed = sqlglot.parse_one(expression, dialect="clickhouse")
    except sqlglot.errors.ParseError:
        raise ValidationFailed(
            f"Invalid value for '{field}': not a valid SQL expression", field=field
        ) from None
    if isinstance(parsed, exp.Query | exp.DDL | exp.DML | exp.Command) or parsed.find(exp.Query) is not None:
        raise ValidationFailed(
            f"Invalid value for '{field}': an expression, not a statement or subquery", field=field
        )


def _fields_of(body: MappingCreate, session: Session) -> list[dict[str, Any]]:
    if body.fields is None:
        return _auto_fields(session, body)
    targets: set[str] = set()
    out = []
    for index, item in enumerate(body.fields):
        if item.target in targets:
            raise ValidationFailed(
                f"Invalid value for 'fields.{index}.target': {item.target!r} is mapped twice",
                field=f"fields.{index}.target",
            )
        targets.add(item.target)
        if item.expression:
            _check_expression(item.expression, f"fields.{index}.expression")
        out.append(item.model_dump())
    return out


def create_mapping(session: Session, body: MappingCreate, user: User, ip: str | None) -> SchemaMapping:
    connector_service.get_connector(session, body.source_connector_id)
    if body.target_connector_id:
        connector_service.get_connector(session, body.target_connector_id)
    mapping = SchemaMapping(
        name=body.name,
        description=body.description,
        source_connector_id=body.source_connector_id,
        source_table=body.source_table,
        target_connector_id=body.target_connector_id,
        target_table=body.target_table,
        target_database=body.target_database,
        fields=_fields_of(body, session),
        created_by=user.id,
    )
    session.add(mapping)
    session.flush()
    log_activity(session, user.id, "schema_mapping.create", "schema_mapping", mapping.id, ip=ip)
    session.commit()
    return mapping


def get_mapping(session: Session, mapping_id: str) -> SchemaMapping:
    mapping = session.get(SchemaMapping, mapping_id)
    if mapping is None:
        raise NotFound("Schema mapping not found", details={"mapping_id": mapping_id})
    return mapping


def mapping_public(mapping: SchemaMapping) -> dict[str, Any]:
    return {
        "id": mapping.id,
        "name": mapping.name,
        "description": mapping.description,
        "source_connector_id": mapping.source_connector_id,
        "source_table": mapping.source_table,
        "target_connector_id": mapping.target_connector_id,
        "target_database": mapping.target_database,
        "target_table": mapping.target_table,
        "fields": mapping.fields,
        "created_by": mapping.created_by,
        "created_at": mapping.created_at,
        "updated_at": mapping.updated_at,
    }


# --- compare ------------------------------------------------------------------------------------

_INT_ORDER = ["Int8", "Int16", "Int32", "Int64", "Int128", "Int256"]
_UINT_ORDER = ["UInt8", "UInt16", "UInt32", "UInt64", "UInt128", "UInt256"]


def _strip_nullable(ch_type: str) -> str:
    return ch_type[9:-1] if ch_type.startswith("Nullable(") else ch_type


def _fits(source: str, target: str) -> bool:
    """Whether every value of `source` fits `target` (ClickHouse types, Nullable stripped)."""
    if source == target or target == "String":
        return True
    for order in (_INT_ORDER, _UINT_ORDER):
        if source in order and target in order:
            return order.index(source) <= order.index(target)
    if source in _UINT_ORDER and target in _INT_ORDER:
        return _UINT_ORDER.index(source) < _INT_ORDER.index(target)
    if source == "Float32" and target == "Float64":
        return True
    if (source in _INT_ORDER[:3] or source in _UINT_ORDER[:3]) and target == "Float64":
        return True
    return source == "Date" and target in ("Date32", "DateTime", "DateTime64(6)")


def _columns(session: Session, ref: SchemaRef, by: str) -> list[tuple[str, str, bool]]:
    if ref.columns is not None:
        return [
            (c.name, c.type, c.nullable if c.nullable is not None else c.type.startswith("Nullable("))
            for c in ref.columns
        ]
    assert ref.connector_id is not None and ref.table is not None
    described = connector_service.table_schema(
        connector_service.get_connector(session, ref.connector_id), ref.table
    )
    return [
        (c.name, _strip_nullable(c.clickhouse_type) if by == "clickhouse_type" else c.type, bool(c.nullable))
        for c in described.columns
    ]


def compare(session: Session, body: CompareRequest) -> dict[str, Any]:
    source = {n: (t, null) for n, t, null in _columns(session, body.source, body.compare_by)}
    target = {n: (t, null) for n, t, null in _columns(session, body.target, body.compare_by)}
    changes: list[dict[str, Any]] = []
    unchanged = []
    for name, (s_type, s_null) in source.items():
        if name not in target:
            continue
        t_type, t_null = target[name]
        s_base, t_base = _strip_nullable(s_type), _strip_nullable(t_type)
        both = {"name": name, "source_type": s_type, "target_type": t_type}
        nulls = {"source_nullable": s_null, "target_nullable": t_null}
        if s_base != t_base:
            safe = _fits(s_base, t_base) and (t_null or not s_null)
            changes.append({**both, **nulls, "change": "type_changed", "safe": safe})
        elif s_null != t_null:
            changes.append({**both, **nulls, "change": "nullability_changed", "safe": t_null})
        else:
            unchanged.append(name)
    only_source = [n for n in source if n not in target]
    only_target = [n for n in target if n not in source]
    for name in only_source:
        changes.append({"name": name, "source_type": source[name][0], "source_nullable": source[name][1],
                        "change": "removed", "safe": False})  # fmt: skip
    for name in only_target:
        changes.append({"name": name, "target_type": target[name][0], "target_nullable": target[name][1],
                        "change": "added", "safe": target[name][1]})  # fmt: skip
    return {
        "identical": not changes,
        "compatible": all(c["safe"] for c in changes if c["change"] != "removed") and not only_source,
        "only_in_source": only_source,
        "only_in_target": only_target,
        "changes": changes,
        "unchanged": unchanged,
    }


# --- generate-transformation -------------------------------------------------------------------


def _select_item(field: dict[str, Any]) -> str:
    value = field.get("expression") or quote_identifier(str(field["source"]))
    target_type = field.get("target_type")
    if target_type:
        value = f"CAST({value} AS {target_type})"
    return f"{value} AS {quote_identifier(field['target'])}"


def generate(
    session: Session, mapping_id: str | None, inline: MappingCreate | None, relation: str, step_id: str
) -> dict[str, Any]:
    if mapping_id is not None:
        mapping = mapping_public(get_mapping(session, mapping_id))
    else:
        assert inline is not None
        fields = _fields_of(inline, session)
        mapping = {**inline.model_dump(), "fields": fields}
    fields = [dict(f) for f in mapping["fields"]]
    if not fields:
        raise ValidationFailed("The mapping has no fields", field="fields")
    for index, item in enumerate(fields):
        FieldMapping.model_validate(item)
        if item.get("expression"):
            _check_expression(item["expression"], f"fields.{index}.expression")
    sql = (
        "SELECT\n    "
        + ",\n    ".join(_select_item(f) for f in fields)
        + f"\nFROM {quote_identifier(relation)}"
    )
    sqlglot.parse_one(sql, dialect="clickhouse")  # the generated statement is valid ClickHouse SQL
    source: dict[str, Any] = {"id": relation, "connector_id": mapping["source_connector_id"]}
    connector = connector_service.get_connector(session, str(mapping["source_connector_id"]))
    source["path" if connector.type in FILE_TYPES else "table"] = mapping["source_table"]
    target: dict[str, Any] = {
        "id": "target_1",
        "table": mapping["target_table"],
        "input": step_id,
        "mode": "append",
    }
    if mapping.get("target_database"):
        target["database"] = mapping["target_database"]
    if mapping.get("target_connector_id"):
        target["connector_id"] = mapping["target_connector_id"]
    return {
        "sql": sql,
        "transformation": {"id": step_id, "type": "sql", "sql": sql},
        "source": source,
        "target": target,
        "columns": [{k: f.get(k) for k in ("source", "target", "target_type", "expression")} for f in fields],
    }
