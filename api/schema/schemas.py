"""Bodies of /schema/* (aggregator-only endpoints: answers in the envelope)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from api.connectors.schemas import ColumnPublic, IndexPublic
from api.core.schemas import RequestModel, ResponseModel, UTCDateTime

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
ConnectorRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SourceTable = Annotated[str, StringConstraints(min_length=1, max_length=512)]
ClickHouseType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_(), ']{0,120}$")]


class IntrospectRequest(RequestModel):
    connector_id: ConnectorRef | Annotated[int, Field(ge=0, le=2**31 - 1)]
    source_type: Literal["database", "api", "file"] | None = Field(
        default=None, description="Informational; the connector's type decides"
    )
    tables: list[SourceTable] | None = Field(
        default=None, max_length=100, description="Only these tables (default: all, up to `max_tables`)"
    )
    include_columns: bool = Field(default=True, description="Describe each table's columns (slower)")
    max_tables: int = Field(default=50, ge=1, le=200)


class TableIntrospection(ResponseModel):
    name: str
    schema_name: str | None = None
    kind: str = "table"
    row_count: int | None = None
    row_count_exact: bool = False
    row_count_method: str | None = None
    primary_key: list[str] = []
    columns: list[ColumnPublic] | None = None
    indexes: list[IndexPublic] | None = None


class IntrospectResult(ResponseModel):
    connector_id: str
    connector_type: str
    table_count: int
    truncated: bool = Field(description="true: more tables exist than were described")
    tables: list[TableIntrospection]


class FieldMapping(RequestModel):
    source: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="Source column (omit when `expression` computes the value)"
    )
    target: Identifier
    target_type: ClickHouseType | None = Field(
        default=None, description="ClickHouse type; default: the source's"
    )
    expression: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="A ClickHouse expression over source columns, e.g. `toDate(created_at)`"
    )

    @model_validator(mode="after")
    def _source_or_expression(self) -> FieldMapping:
        if not self.source and not self.expression:
            raise ValueError("a field needs `source` or `expression`")
        return self


class MappingCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    source_connector_id: ConnectorRef
    source_table: SourceTable
    target_table: Identifier
    target_database: Identifier | None = None
    target_connector_id: ConnectorRef | None = None
    fields: list[FieldMapping] | None = Field(
        default=None, max_length=1000, description="Omit to map every source column to a same-named column"
    )


class MappedField(ResponseModel):
    source: str | None
    target: str
    target_type: str | None = None
    expression: str | None = None


class MappingPublic(ResponseModel):
    id: str
    name: str
    description: str | None = None
    source_connector_id: str | None
    source_table: str
    target_connector_id: str | None = None
    target_database: str | None = None
    target_table: str
    fields: list[MappedField]
    created_by: str | None = None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class ColumnSpec(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    nullable: bool | None = None


class SchemaRef(RequestModel):
    """A table of a connector, or columns given inline."""

    connector_id: ConnectorRef | None = None
    table: SourceTable | None = None
    columns: list[ColumnSpec] | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_kind(self) -> SchemaRef:
        if (self.connector_id is None) == (self.columns is None):
            raise ValueError("give either connector_id + table, or columns")
        if self.connector_id is not None and not self.table:
            raise ValueError("table is required with connector_id")
        return self


class CompareRequest(RequestModel):
    source: SchemaRef
    target: SchemaRef
    compare_by: Literal["clickhouse_type", "source_type"] = Field(
        default="clickhouse_type", description="Types compared as the warehouse would store them, or as named"
    )


class ColumnChange(ResponseModel):
    name: str
    source_type: str | None = None
    target_type: str | None = None
    source_nullable: bool | None = None
    target_nullable: bool | None = None
    change: Literal["added", "removed", "type_changed", "nullability_changed"]
    safe: bool = Field(description="true: a load from source into target keeps every value")


class CompareResult(ResponseModel):
    identical: bool
    compatible: bool = Field(description="every source column fits its target column")
    only_in_source: list[str]
    only_in_target: list[str]
    changes: list[ColumnChange]
    unchanged: list[str]


class GenerateRequest(RequestModel):
    mapping_id: ConnectorRef | None = None
    mapping: MappingCreate | None = None
    source_relation: Identifier = Field(default="source_1", description="The source id in the pipeline")
    transformation_id: Identifier = "transform_1"

    @model_validator(mode="after")
    def _one(self) -> GenerateRequest:
        if (self.mapping_id is None) == (self.mapping is None):
            raise ValueError("give either mapping_id or mapping")
        return self


class GeneratedTransformation(ResponseModel):
    sql: str
    transformation: dict[str, Any] = Field(description="A pipeline `transformations[]` item")
    source: dict[str, Any] = Field(description="A pipeline `sources[]` item reading the mapped table")
    target: dict[str, Any] = Field(description="A pipeline `targets[]` item")
    columns: list[MappedField]
