"""What a deployed pipeline document becomes in Dagster, as plain data (no Dagster import).

The `aetl_pipelines` code location turns these plans into assets, jobs and schedules; the API uses the
same names to launch runs (job name, run config) and to find what a deploy produced, so the two can
never disagree on a name. Everything here is pure and unit-tested without Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orchestration.specs.pipeline import PipelineDocument, Source, SourceType, Target

LOCATION = "aetl_pipelines"
REPOSITORY = "__repository__"

TAG_PIPELINE = "aetl/pipeline_id"
TAG_VERSION = "aetl/pipeline_version"
TAG_VERSION_ID = "aetl/pipeline_version_id"
TAG_TRIGGERED_BY = "aetl/triggered_by"
TAG_TRIGGER = "aetl/trigger"

AssetKeyPath = tuple[str, ...]
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def dagster_name(value: str) -> str:
    """Dagster names (jobs, ops, asset key parts, groups) allow letters, digits and `_` only."""
    return _UNSAFE.sub("_", value)


def job_name(pipeline_id: str) -> str:
    """One job per pipeline; the `pipeline_` prefix keeps it apart from every other location's jobs."""
    return f"pipeline_{dagster_name(pipeline_id)}"


def schedule_name(pipeline_id: str, trigger_id: str) -> str:
    return f"{job_name(pipeline_id)}__{dagster_name(trigger_id)}"


def target_asset_key(pipeline_id: str, target: Target) -> AssetKeyPath:
    table = f"{target.database}__{target.table}" if target.database else target.table
    return ("pipelines", dagster_name(pipeline_id), table)


def warehouse_table_key(database: str | None, table: str) -> AssetKeyPath:
    """A table of the platform's warehouse that no pipeline loads: an external asset."""
    return ("warehouse", database or "default", table)


def source_asset_key(source: Source) -> AssetKeyPath | None:
    """The upstream asset a source reads, for lineage; None for a query (no single table)."""
    if source.table is not None:
        database, _, table = source.table.rpartition(".")
        database = database or source.database or ""
        if source.connector_id is None and source.type in (None, SourceType.CLICKHOUSE):
            return warehouse_table_key(database or None, table)
        parts = [p for p in (database, table) if p]
        return ("connectors", dagster_name(source.connector_id or "unknown"), dagster_name("__".join(parts)))
    if source.path is not None:
        return (
            "connectors",
            dagster_name(source.connector_id or "files"),
            dagster_name(source.path.strip("/")) or "root",
        )
    return None


def op_name(key: AssetKeyPath) -> str:
    """The op Dagster names after an asset key (`a/b/c` -> `a__b__c`): where run config goes."""
    return "__".join(key)


def run_config(pipeline_id: str, document: PipelineDocument, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run parameters reach every target asset of the job as op config."""
    return {
        "ops": {
            op_name(target_asset_key(pipeline_id, target)): {"config": {"parameters": dict(parameters)}}
            for target in document.targets
        }
    }


@dataclass(frozen=True)
class TargetPlan:
    key: AssetKeyPath
    target_id: str
    table: str
    deps: tuple[AssetKeyPath, ...]


@dataclass(frozen=True)
class SchedulePlan:
    name: str
    trigger_id: str
    cron: str
    timezone: str
    running: bool


@dataclass(frozen=True)
class PipelinePlan:
    pipeline_id: str
    version_id: str
    version_number: int
    name: str
    document: PipelineDocument
    job_name: str
    group_name: str
    targets: tuple[TargetPlan, ...]
    schedules: tuple[SchedulePlan, ...]

    @property
    def tags(self) -> dict[str, str]:
        return {
            TAG_PIPELINE: self.pipeline_id,
            TAG_VERSION: str(self.version_number),
            TAG_VERSION_ID: self.version_id,
        }


@dataclass(frozen=True)
class DeployedPipeline:
    """One row the code location reads: the pipeline and the document of its deployed version."""

    pipeline_id: str
    name: str
    status: str
    version_id: str
    version_number: int
    document: Any


@dataclass
class LocationPlan:
    pipelines: list[PipelinePlan] = field(default_factory=list)
    # upstream tables that no pipeline of the location loads (AssetSpec, one per key)
    external_keys: list[AssetKeyPath] = field(default_factory=list)
    # pipeline id -> why its deployed document could not be built
    failures: dict[str, str] = field(default_factory=dict)


def plan_pipeline(row: DeployedPipeline) -> PipelinePlan:
    """Raises DocumentError/ValueError for a document that cannot be built."""
    document = PipelineDocument.parse(row.document)
    targets = []
    for target in document.targets:
        relation = document.input_of(target)
        needed = _sources_behind(document, relation)
        deps = tuple(dict.fromkeys(k for k in (source_asset_key(s) for s in needed) if k is not None))
        targets.append(
            TargetPlan(
                key=target_asset_key(row.pipeline_id, target),
                target_id=target.id,
                table=target.table,
                deps=deps,
            )
        )
    paused = row.status == "paused"
    schedules = tuple(
        SchedulePlan(
            name=schedule_name(row.pipeline_id, trigger_id),
            trigger_id=trigger_id,
            cron=cron,
            timezone=timezone,
            running=enabled and not paused,
        )
        for trigger_id, cron, timezone, enabled in document.cron_schedules()
    )
    return PipelinePlan(
        pipeline_id=row.pipeline_id,
        version_id=row.version_id,
        version_number=row.version_number,
        name=row.name,
        document=document,
        job_name=job_name(row.pipeline_id),
        group_name=job_name(row.pipeline_id),
        targets=tuple(targets),
        schedules=schedules,
    )


def _sources_behind(document: PipelineDocument, relation: str) -> list[Source]:
    """The sources a relation reads: SQL steps may read any earlier relation, so all sources before it."""
    if any(s.id == relation for s in document.sources):
        return [s for s in document.sources if s.id == relation]
    step = next((t for t in document.transformations if t.id == relation), None)
    if step is not None and step.input is not None:
        return _sources_behind(document, step.input)
    return list(document.sources)


def plan_location(rows: list[DeployedPipeline]) -> LocationPlan:
    """Every deployed pipeline that builds; a broken one is recorded in `failures` and left out.

    A source table that another pipeline of the location loads depends on that pipeline's asset, so
    lineage runs pipeline to pipeline; other source tables become external assets.
    """
    plan = LocationPlan()
    for row in rows:
        try:
            plan.pipelines.append(plan_pipeline(row))
        except ValueError as error:  # DocumentError is a ValueError
            plan.failures[row.pipeline_id] = f"the deployed document does not build: {error}"
    loaded: dict[AssetKeyPath, AssetKeyPath] = {}
    for pipeline in plan.pipelines:
        for target, spec_target in zip(pipeline.targets, pipeline.document.targets, strict=True):
            if spec_target.connector_id is None:
                loaded.setdefault(warehouse_table_key(spec_target.database, spec_target.table), target.key)
    external: dict[AssetKeyPath, None] = {}
    rewired = []
    for pipeline in plan.pipelines:
        own = {t.key for t in pipeline.targets}
        targets = []
        for target in pipeline.targets:
            deps = tuple(loaded.get(d, d) for d in target.deps)
            # a pipeline reading the table it loads itself (incremental from its own target) has no edge
            deps = tuple(d for d in deps if d not in own)
            external.update((d, None) for d in deps if d[0] != "pipelines")
            targets.append(TargetPlan(target.key, target.target_id, target.table, deps))
        rewired.append(
            PipelinePlan(**{**pipeline.__dict__, "targets": tuple(targets)})  # type: ignore[arg-type]
        )
    plan.pipelines = rewired
    plan.external_keys = list(external)
    return plan
