"""Request and response bodies of the datamarts and Excel export endpoints (ai-etl spec shapes)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from api.core.schemas import RequestModel, UTCDateTime
from orchestration.specs.datamart import MAX_QUERY_CHARS, NAME_PATTERN

DatamartName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Cron = Annotated[str, StringConstraints(min_length=9, max_length=120)]


class DatamartCreate(RequestModel):
    name: DatamartName = Field(description="the dbt model's and warehouse table's name")
    description: Description | None = None
    source_query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)] = Field(
        description="one ClickHouse SELECT over pipeline targets or other datamarts"
    )
    connector_id: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="accepted for compatibility; datamarts live in the platform's warehouse"
    )
    materialized: bool = Field(default=True, description="true: a table (dbt `table`), false: a view")
    refresh_schedule: Cron | None = Field(default=None, description="cron (UTC); the schedule starts enabled")

    @field_validator("description")
    @classmethod
    def _no_jinja(cls, value: str | None) -> str | None:
        # dbt renders jinja in model descriptions: a description is text, never a template
        if value is not None and re.search(r"\{[{%#]", value):
            raise ValueError("may not contain '{{', '{%' or '{#'")
        return value


class DatamartCreated(BaseModel):
    datamart_name: str
    status: Literal["created", "failed"]
    row_count: int | None
    created_at: UTCDateTime
    next_refresh: UTCDateTime | None
    version: int
    materialized: bool
    dagster_asset_key: list[str]
    dagster_run_id: str | None
    error: str | None = None


class RefreshRequest(RequestModel):
    concurrent_mode: bool = Field(
        default=True,
        description="build into a new table and EXCHANGE TABLES (dbt-clickhouse's table materialization "
        "always does on an Atomic database: readers never see an empty or partial table)",
    )


class RefreshStarted(BaseModel):
    datamart_name: str
    refresh_status: Literal["in_progress"]
    started_at: UTCDateTime
    run_id: str
    dagster_run_id: str


class ScheduleRequest(RequestModel):
    cron_expression: Cron
    enabled: bool = True


class SchedulePublic(BaseModel):
    datamart_name: str
    schedule: str
    next_run: UTCDateTime | None
    enabled: bool
    dagster_schedule_name: str


class DatamartPreview(BaseModel):
    datamart_name: str
    columns: list[str]
    column_types: list[str]
    rows: list[list[Any]]
    total_rows: int
    limit: int


class DatamartPublic(BaseModel):
    datamart_name: str
    description: str | None
    status: str
    materialized: bool
    version: int
    row_count: int | None
    refresh_schedule: str | None
    schedule_enabled: bool
    next_refresh: UTCDateTime | None
    last_error: str | None
    last_run_id: str | None
    last_run_status: str | None
    built_at: UTCDateTime | None
    created_at: UTCDateTime
    dagster_asset_key: list[str]


class ExcelExportRequest(RequestModel):
    include_charts: bool = True
    include_summary: bool = True
    template: Literal["default"] = "default"


class ExcelExport(BaseModel):
    file_url: str
    file_size_bytes: int
    expires_at: UTCDateTime
    rows: int
    sheets: int
