"""The code location `aetl_pipelines`: Definitions built from the pipelines the API has deployed.

At load time (code server start, every reload, every run worker) the deployed versions are read
straight from the metadata DB (`DATABASE_URL`); `orchestration.specs.pipeline_plan` decides names and
lineage, this module only turns the plans into Dagster objects. A document that does not build is left
out and its pipeline marked `deploy_status = failed` with the reason, so one broken document never
takes the location down.
"""

import logging
from collections.abc import Callable
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    DefaultScheduleStatus,
    Definitions,
    Field,
    MaterializeResult,
    Permissive,
    ScheduleDefinition,
    asset,
    define_asset_job,
    definitions,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.defs.common import metadata_database_url, shared_definitions
from orchestration.specs.pipeline_plan import (
    TAG_TRIGGER,
    TAG_TRIGGERED_BY,
    DeployedPipeline,
    LocationPlan,
    PipelinePlan,
    TargetPlan,
    plan_location,
)

logger = logging.getLogger("aetl.pipelines")

DEPLOYED_SQL = """
SELECT p.id, p.name, p.status, v.id, v.number, v.document
FROM pipelines p JOIN pipeline_versions v ON v.id = p.deployed_version_id
WHERE p.deleted_at IS NULL AND p.deploy_status IN ('deploying', 'deployed', 'failed')
ORDER BY p.created_at, p.id
"""

# only when the stored state differs: run workers load this module too and must not write each time
RECORD_FAILURE_SQL = """
UPDATE pipelines SET deploy_status = 'failed', status = 'failed', deploy_error = %(error)s
WHERE id = %(id)s AND deployed_version_id = %(version_id)s
  AND (deploy_status <> 'failed' OR deploy_error IS DISTINCT FROM %(error)s)
"""


def load_deployed(database_url: str) -> list[DeployedPipeline]:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as connection:
        exists = connection.execute("SELECT to_regclass('public.pipeline_versions') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []  # metadata DB not migrated yet: nothing is deployed
        rows = connection.execute(DEPLOYED_SQL).fetchall()
    return [
        DeployedPipeline(
            pipeline_id=r[0], name=r[1], status=r[2], version_id=r[3], version_number=r[4], document=r[5]
        )
        for r in rows
    ]


def record_failures(database_url: str, failures: dict[str, str], rows: list[DeployedPipeline]) -> None:
    if not failures:
        return
    import psycopg

    versions = {r.pipeline_id: r.version_id for r in rows}
    try:
        with psycopg.connect(database_url, connect_timeout=5) as connection:
            for pipeline_id, error in failures.items():
                connection.execute(
                    RECORD_FAILURE_SQL,
                    {"id": pipeline_id, "version_id": versions[pipeline_id], "error": error[:4000]},
                )
    except Exception as error:  # the location must load even when the write-back fails
        logger.warning("could not record deploy failures: %s", type(error).__name__)


def target_asset(plan: PipelinePlan, target: TargetPlan) -> AssetsDefinition:
    """One asset per target: moves the rows for that target and records the figures of the load."""
    document = plan.document
    spec_target = next(t for t in document.targets if t.id == target.target_id)

    @asset(
        key=AssetKey(list(target.key)),
        deps=[AssetKey(list(d)) for d in target.deps],
        group_name=plan.group_name,
        kinds={"clickhouse"},
        tags={"aetl/pipeline_id": plan.pipeline_id.replace("/", "_")},
        description=f"{plan.name}: {spec_target.mode.value} into {spec_target.table}",
        metadata={
            "pipeline_id": plan.pipeline_id,
            "pipeline_version": plan.version_number,
            "table": target.table,
            "load_mode": spec_target.mode.value,
        },
        config_schema={"parameters": Field(Permissive(), is_required=False, default_value={})},
        required_resource_keys={"clickhouse"},
    )
    def _load(context: AssetExecutionContext) -> MaterializeResult:
        from orchestration.movement import MoveContext, move_target

        given = (context.op_execution_context.op_config or {}).get("parameters", {})
        parameters = {**document.parameters, **given}
        # re-executions share the root run id: their loads are the same load, written once
        load_id = context.run.root_run_id or context.run.run_id
        result = move_target(
            document,
            spec_target,
            MoveContext(log=context.log, run_id=context.run.run_id, load_id=load_id, parameters=parameters),
            context.resources.clickhouse,
        )
        return MaterializeResult(metadata=result.as_metadata())

    return _load


def pipeline_definitions(
    plan: PipelinePlan,
) -> tuple[list[AssetsDefinition], UnresolvedAssetJobDefinition, list[ScheduleDefinition]]:
    assets = [target_asset(plan, target) for target in plan.targets]
    job = define_asset_job(
        plan.job_name,
        selection=AssetSelection.assets(*[AssetKey(list(t.key)) for t in plan.targets]),
        tags=plan.tags,
        description=f"Pipeline {plan.name} (version {plan.version_number})",
    )
    schedules = [
        ScheduleDefinition(
            name=schedule.name,
            cron_schedule=schedule.cron,
            execution_timezone=schedule.timezone,
            job=job,
            default_status=(
                DefaultScheduleStatus.RUNNING if schedule.running else DefaultScheduleStatus.STOPPED
            ),
            tags={TAG_TRIGGER: schedule.trigger_id, TAG_TRIGGERED_BY: "schedule"},
            description=f"{plan.name}: {schedule.cron} ({schedule.timezone})",
        )
        for schedule in plan.schedules
    ]
    return assets, job, schedules


def build_definitions(location: LocationPlan) -> Definitions:
    """Definitions of every plan that builds, with shared resources; failures go to `location.failures`."""
    built: list[tuple[PipelinePlan, Any]] = []
    for plan in location.pipelines:
        try:
            built.append((plan, pipeline_definitions(plan)))
        except Exception as error:  # one pipeline's Dagster error must not hide the others
            location.failures[plan.pipeline_id] = f"Dagster refused the definitions: {error}"
    external = [
        AssetSpec(AssetKey(list(key)), group_name="external_sources") for key in location.external_keys
    ]

    def assemble(parts: list[tuple[PipelinePlan, Any]]) -> Definitions:
        return Definitions.merge(
            Definitions(
                assets=[*external, *(a for _, (assets, _, _) in parts for a in assets)],
                jobs=[job for _, (_, job, _) in parts],
                schedules=[s for _, (_, _, schedules) in parts for s in schedules],
            ),
            shared_definitions(),
        )

    defs = assemble(built)
    try:
        Definitions.validate_loadable(defs)
    except Exception:
        # rare: a conflict only the whole set shows; find the pipelines that cannot load alone
        good = []
        for plan, parts in built:
            try:
                Definitions.validate_loadable(assemble([(plan, parts)]))
                good.append((plan, parts))
            except Exception as error:
                location.failures[plan.pipeline_id] = f"Dagster refused the definitions: {error}"
        defs = assemble(good)
    return defs


def build_location(
    database_url: str | None = None, loader: Callable[[str], list[DeployedPipeline]] = load_deployed
) -> Definitions:
    url = database_url or metadata_database_url()
    rows = loader(url)
    location = plan_location(rows)
    defs = build_definitions(location)
    record_failures(url, location.failures, rows)
    for pipeline_id, error in location.failures.items():
        logger.warning("pipeline %s left out of the location: %s", pipeline_id, error)
    if loader is load_deployed:
        from orchestration.defs.watches import build_watches

        # watched folders are read from the same DB at the same moment: one reload picks up both
        defs = Definitions.merge(defs, build_watches(url))
    return defs


@definitions
def defs() -> Definitions:
    # lazy: importing this module (tests, the API's type checks) never touches the database
    return build_location()
