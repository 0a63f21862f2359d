"""Warehouse domain: the ClickHouse resource and platform-owned tables (the calendar dimension)."""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
    define_asset_job,
)

from orchestration.lib.calendar import build_calendar_days, calendar_days_ddl
from orchestration.lib.sql import quote_identifier
from orchestration.warehouse.resource import ClickHouseResource

CALENDAR_TABLE = "calendar_days"


class CalendarConfig(Config):
    start: str = "2020-01-01"
    end: str = "2030-12-31"


@asset(group_name="warehouse", kinds={"clickhouse", "arrow"}, description="One row per calendar day.")
def calendar_days(
    context: AssetExecutionContext, config: CalendarConfig, clickhouse: ClickHouseResource
) -> MaterializeResult:
    data = build_calendar_days(dt.date.fromisoformat(config.start), dt.date.fromisoformat(config.end))
    # Full refresh through a staging table: a retried run replaces the rows instead of doubling them.
    clickhouse.replace_table(CALENDAR_TABLE, calendar_days_ddl, data)
    client = clickhouse.get_client()
    try:
        stored = int(
            client.query(f"SELECT count() FROM {quote_identifier(CALENDAR_TABLE)}").result_rows[0][0]
        )
    finally:
        client.close()
    context.log.info(f"calendar_days: {stored} rows from {config.start} to {config.end}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": stored,
            "table": MetadataValue.text(CALENDAR_TABLE),
            "first_day": MetadataValue.text(config.start),
            "last_day": MetadataValue.text(config.end),
        }
    )


@asset_check(asset=calendar_days, description="Every day appears once, with no gaps.")
def calendar_days_is_gapless(clickhouse: ClickHouseResource) -> AssetCheckResult:
    client = clickhouse.get_client()
    try:
        row = client.query(
            f"SELECT count(), uniqExact(date), dateDiff('day', min(date), max(date)) + 1 "
            f"FROM {quote_identifier(CALENDAR_TABLE)}"
        ).result_rows[0]
    finally:
        client.close()
    rows, distinct_days, span = (int(v) for v in row)
    return AssetCheckResult(
        passed=rows > 0 and rows == distinct_days == span,
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows": rows, "distinct_days": distinct_days, "span_days": span},
    )


warehouse_job = define_asset_job("warehouse_job", selection=[calendar_days], description="Platform tables.")

defs = Definitions(
    assets=[calendar_days],
    asset_checks=[calendar_days_is_gapless],
    jobs=[warehouse_job],
)
