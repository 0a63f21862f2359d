"""Datamarts domain: every dbt model of dbt_project/ is an asset, built by dbt-clickhouse.

Its own code location (`aetl_datamarts`, see workspace.yaml): dagster-dbt costs ~4.5 CPU-seconds of
imports, which every run worker and code server of a location pays; pipeline runs and deploy reloads
of `aetl` stay free of it. Lineage across the two locations is by asset key, as within one.
"""

import shutil
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)
from dagster_dbt import DbtCliResource, build_dbt_asset_selection, dbt_assets

from orchestration.dbt import build_dbt_project, dbt_executable, require_manifest
from orchestration.defs.common import shared_definitions
from orchestration.lib.env import patched_environ
from orchestration.warehouse.resource import ClickHouseResource

DBT_PROJECT = build_dbt_project()


@dbt_assets(manifest=require_manifest(DBT_PROJECT), project=DBT_PROJECT, name="dbt_models")
def dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, clickhouse: ClickHouseResource
) -> Iterator[Any]:
    # dbt must write to the warehouse the resource points at, whatever the worker's environment.
    with patched_environ(clickhouse.dbt_env()):
        invocation = dbt.cli(["build"], context=context)
    yield from invocation.stream()
    # Each invocation writes ~1.5 MB of artifacts to its own target folder: keep only failed ones.
    shutil.rmtree(invocation.target_path, ignore_errors=True)


datamarts_job = define_asset_job(
    "datamarts_job",
    selection=build_dbt_asset_selection([dbt_models]),
    description="Builds every dbt model (seeds, staging, marts) and runs its tests.",
)

datamarts_nightly = ScheduleDefinition(
    name="datamarts_nightly",
    job=datamarts_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Demo: rebuild the datamarts every night (stopped until someone starts it).",
)

defs = Definitions.merge(
    Definitions(
        assets=[dbt_models],
        jobs=[datamarts_job],
        schedules=[datamarts_nightly],
        resources={"dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable())},
    ),
    shared_definitions(),
)
