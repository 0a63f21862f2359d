"""Datamarts domain: every dbt model of dbt_project/ is an asset, built by dbt-clickhouse.

Its own code location (`aetl_datamarts`, see workspace.yaml): dagster-dbt costs ~4.5 CPU-seconds of
imports, which every run worker and code server of a location pays; pipeline runs and deploy reloads
of `aetl` stay free of it. Lineage across the two locations is by asset key, as within one.
"""

import logging
import os
import shutil
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    build_dbt_asset_selection,
    dbt_assets,
)

from orchestration.dbt import build_dbt_project, dbt_executable, dbt_paths_env, require_manifest
from orchestration.defs.common import shared_definitions
from orchestration.lib.env import patched_environ
from orchestration.specs.datamart import TAG_DATAMART, asset_key, job_name, schedule_name
from orchestration.warehouse.resource import ClickHouseResource

logger = logging.getLogger("aetl.datamarts")

# the API's datamarts (metadata DB): their refresh schedules; the models themselves are in the manifest
DATAMARTS_SQL = """
SELECT name, refresh_schedule, schedule_enabled FROM datamarts
WHERE deleted_at IS NULL ORDER BY created_at, name
"""

DBT_PROJECT = build_dbt_project()


# every datamart declares the pipeline tables it reads as dbt sources of its own .yml, carrying the
# pipeline asset's key: two datamarts over one table are two sources with the same (upstream) key
TRANSLATOR = DagsterDbtTranslator(DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))


@dbt_assets(
    manifest=require_manifest(DBT_PROJECT),
    project=DBT_PROJECT,
    name="dbt_models",
    dagster_dbt_translator=TRANSLATOR,
)
def dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, clickhouse: ClickHouseResource
) -> Iterator[Any]:
    # dbt must write to the warehouse the resource points at, whatever the worker's environment.
    with patched_environ({**clickhouse.dbt_env(), **dbt_paths_env()}):
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


def metadata_database_url() -> str:
    # orchestration.defs.pipelines has the same, but importing it would build that location here
    url = os.environ.get("DATABASE_URL")
    if not url:
        from api.core.config import get_settings

        url = get_settings().database_url
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def load_datamart_schedules(database_url: str) -> list[tuple[str, str | None, bool]]:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as connection:
        exists = connection.execute("SELECT to_regclass('public.datamarts') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        return [(r[0], r[1], bool(r[2])) for r in connection.execute(DATAMARTS_SQL).fetchall()]


RUNNING = DefaultScheduleStatus.RUNNING


def datamart_definitions(
    rows: list[tuple[str, str | None, bool]], model_keys: set[AssetKey]
) -> tuple[list[UnresolvedAssetJobDefinition], list[ScheduleDefinition]]:
    """A job per datamart whose model is in the manifest (refresh = a run of it), and its schedule."""
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[ScheduleDefinition] = []
    for name, cron, enabled in rows:
        key = AssetKey(list(asset_key(name)))
        if key not in model_keys:
            continue  # no model (yet): the datamart answers with its own error, the location loads
        job = define_asset_job(
            job_name(name),
            selection=AssetSelection.assets(key),
            tags={TAG_DATAMART: name},
            description=f"Builds datamart {name} (dbt build of its model and tests).",
        )
        jobs.append(job)
        if cron:
            try:
                schedule = ScheduleDefinition(
                    name=schedule_name(name),
                    job=job,
                    cron_schedule=cron,
                    execution_timezone="UTC",
                    default_status=DefaultScheduleStatus.RUNNING
                    if enabled
                    else DefaultScheduleStatus.STOPPED,
                    description=f"Refreshes datamart {name}.",
                )
            except Exception as error:  # one bad cron leaves that datamart unscheduled, not the location down
                logger.warning("schedule of datamart %s left out: %s", name, error)
                continue
            schedules.append(schedule)
    return jobs, schedules


def _datamart_rows() -> list[tuple[str, str | None, bool]]:
    try:
        return load_datamart_schedules(metadata_database_url())
    except Exception as error:  # no metadata DB: the dbt models still load, without per-datamart jobs
        logger.warning("datamarts not read from the metadata DB: %s", type(error).__name__)
        return []


DATAMART_JOBS, DATAMART_SCHEDULES = datamart_definitions(_datamart_rows(), set(dbt_models.keys))

defs = Definitions.merge(
    Definitions(
        assets=[dbt_models],
        jobs=[datamarts_job, *DATAMART_JOBS],
        schedules=[datamarts_nightly, *DATAMART_SCHEDULES],
        resources={"dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable())},
    ),
    shared_definitions(),
)
