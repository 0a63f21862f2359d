"""Request and response models of /connectors (ai-etl bodies bare, aggregator-only ones enveloped)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from api.core.schemas import RequestModel, ResponseModel, UTCDateTime

ConnectorStatus = Literal["active", "inactive"]


class ConnectorCreate(RequestModel):
    """ai-etl: `type` + `config` + `credentials`; aggregator: `connector_type` + `config` holding
    `username`/`password` too. Both end as the same typed configuration."""

    name: str = Field(min_length=1, max_length=200)
    type: str | None = Field(
        default=None, max_length=32, description="postgresql, mysql, clickhouse, csv, ..."
    )
    connector_type: str | None = Field(
        default=None, max_length=32, description="aggregator spelling of `type`"
    )
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any] = Field(default_factory=dict, description="Connection settings; see README")
    credentials: dict[str, Any] | None = Field(
        default=None, description="username / password (encrypted at rest)"
    )

    @model_validator(mode="after")
    def _one_type(self) -> ConnectorCreate:
        if not (self.type or self.connector_type):
            raise ValueError("type (or connector_type) is required")
        if self.type and self.connector_type and self.type != self.connector_type:
            raise ValueError("type and connector_type disagree")
        return self

    @property
    def kind(self) -> str:
        return str(self.type or self.connector_type)


class ConnectorUpdate(RequestModel):
    """Partial: given config keys replace the stored ones; omitted secrets stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any] | None = None
    credentials: dict[str, Any] | None = None
    status: ConnectorStatus | None = None


class ConnectorPublic(ResponseModel):
    id: str
    name: str
    type: str
    connector_type: str
    description: str | None = None
    status: str
    config: dict[str, Any] = Field(description='Settings; secrets appear as "********"')
    created_by: str | None = None
    created_at: UTCDateTime
    updated_at: UTCDateTime
    last_tested: UTCDateTime | None = None
    test_status: str | None = None
    test_message: str | None = None


class ConnectorList(ResponseModel):
    items: list[ConnectorPublic]
    total: int
    limit: int
    offset: int


class ConnectorTestResult(ResponseModel):
    connector_id: str
    test_status: Literal["success", "failed"]
    latency_ms: float
    tested_at: UTCDateTime
    details: dict[str, Any]
    server_version: str | None = None
    message: str | None = None


class ColumnPublic(ResponseModel):
    name: str
    type: str = Field(description="The source's own type name")
    clickhouse_type: str = Field(description="The warehouse type a load creates")
    nullable: bool
    primary_key: bool = False
    default: str | None = None


class IndexPublic(ResponseModel):
    name: str
    columns: list[str]
    unique: bool = False
    primary: bool = False


class TableSchemaPublic(ResponseModel):
    table_name: str
    columns: list[ColumnPublic]
    primary_key: list[str]
    row_count: int | None = None
    row_count_exact: bool = Field(description="false: an estimate (planner statistics or file size)")
    row_count_method: str
    indexes: list[IndexPublic]
