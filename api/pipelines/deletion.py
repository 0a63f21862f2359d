"""Pipelines in the admin deletion registry: soft-deleted with their project, restored with their
versions (and redeployed if they were deployed), purged with their Dagster definitions and, when
the administrator asks, the warehouse tables they loaded.

The `aetl_pipelines` code location builds definitions only from live pipelines, so every change of
what is live that touches a deployed pipeline ends in a reload of the location (after the commit).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.admin.deletion import (
    DeletableKind,
    Dependent,
    PurgeOptions,
    after_commit,
    register_dependent,
    register_kind,
    report_purged,
)
from api.core.config import get_settings
from api.core.errors import Conflict
from api.pipelines.models import Pipeline, PipelineVersion
from orchestration.lib.sql import qualified_name
from orchestration.specs.pipeline import DocumentError, PipelineDocument

logger = logging.getLogger("api.pipelines")

# deploy states in which the location holds (or is about to hold) the pipeline's definitions
IN_LOCATION = ("deploying", "deployed", "failed")


def _reload_later(session: Session) -> None:
    from api.pipelines import service

    after_commit(session, service.undeploy_in_background)


def _redeploy_later(session: Session, pipeline_ids: list[str]) -> None:
    from api.pipelines import service

    after_commit(session, lambda: service.finish_deploys(pipeline_ids))


def _take_out_of_location(pipeline: Pipeline) -> bool:
    """Marks a deleted pipeline undeployed; returns whether the location must reload to drop it."""
    if pipeline.deployed_version_id is not None and pipeline.deploy_status in IN_LOCATION:
        pipeline.deploy_status = "undeployed"
        return True
    return False


def _put_back_in_location(pipeline: Pipeline) -> bool:
    """A restored pipeline that was deployed when it was deleted goes back to Dagster."""
    if pipeline.deployed_version_id is not None and pipeline.deploy_status == "undeployed":
        pipeline.deploy_status, pipeline.deploy_error = "deploying", None
        return True
    return False


def soft_delete(session: Session, pipeline: Pipeline, actor_id: str | None, when: datetime) -> bool:
    """Returns whether the location must reload. Its queued and running runs are stopped after the
    commit (a deleted pipeline keeps nothing running)."""
    from api.pipelines import service

    pipeline.deleted_at, pipeline.deleted_by = when, actor_id
    in_location = _take_out_of_location(pipeline)
    if in_location:
        pipeline_id = pipeline.id

        def stop() -> None:
            service.stop_runs(pipeline_id)

        after_commit(session, stop)
    return in_location


def warehouse_tables(session: Session, pipeline_id: str) -> list[str]:
    """Qualified names of the platform-warehouse tables any version of the pipeline loads, with their
    `__rejected` companions (tables of a ClickHouse connector belong to that server's owner)."""
    names: dict[str, None] = {}
    for document in session.scalars(
        select(PipelineVersion.document).where(PipelineVersion.pipeline_id == pipeline_id)
    ):
        try:
            parsed = PipelineDocument.parse(document)
        except DocumentError:
            continue
        for target in parsed.targets:
            if target.connector_id is None:
                names[qualified_name(target.table, target.database)] = None
                names[qualified_name(f"{target.table}__rejected", target.database)] = None
    return list(names)


def live_target_tables(session: Session) -> set[str]:
    """Tables some pipeline that still exists (live or restorable) loads."""
    found: set[str] = set()
    for pipeline_id in session.scalars(select(Pipeline.id)):
        found.update(warehouse_tables(session, pipeline_id))
    return found


def drop_warehouse_tables(tables: list[str]) -> int:
    """Drops the tables that exist; returns how many it dropped."""
    if not tables:
        return 0
    from orchestration.warehouse.client import get_client

    client = get_client(get_settings().clickhouse_url)
    try:
        dropped = 0
        for table in tables:
            database, _, name = table.rpartition(".")
            exists = client.query(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": database.strip("`") or client.database or "default", "t": name.strip("`")},
            ).result_rows[0][0]
            if exists:
                client.command(f"DROP TABLE IF EXISTS {table} SYNC")
                dropped += 1
        return dropped
    finally:
        client.close()


def _purge_pipeline_tables(session: Session, pipelines: list[Pipeline], options: PurgeOptions) -> int:
    if not options.drop_tables:
        return 0
    # a table another (surviving) pipeline also loads stays
    purged = {p.id for p in pipelines}
    tables: dict[str, None] = {}
    for pipeline in pipelines:
        tables.update(dict.fromkeys(warehouse_tables(session, pipeline.id)))
    kept: set[str] = set()
    for other in session.scalars(select(Pipeline.id).where(Pipeline.id.not_in(purged))):
        kept.update(warehouse_tables(session, other))
    return drop_warehouse_tables([t for t in tables if t not in kept])


# -- as a dependent of projects ------------------------------------------------------------------


def _project_soft_delete(session: Session, project_id: str, actor_id: str, when: datetime) -> int:
    rows = list(
        session.scalars(
            select(Pipeline)
            .where(Pipeline.project_id == project_id, Pipeline.deleted_at.is_(None))
            .with_for_update()
        )
    )
    if any([soft_delete(session, row, actor_id, when) for row in rows]):
        _reload_later(session)
    return len(rows)


def _project_restore(session: Session, project_id: str, deleted_at: datetime) -> int:
    # only what went with the project: a pipeline deleted on its own before stays deleted
    rows = list(
        session.scalars(
            select(Pipeline)
            .where(Pipeline.project_id == project_id, Pipeline.deleted_at == deleted_at)
            .with_for_update()
        )
    )
    for row in rows:
        row.deleted_at, row.deleted_by = None, None
    redeploy = [row.id for row in rows if _put_back_in_location(row)]
    if redeploy:
        _redeploy_later(session, redeploy)
    return len(rows)


def _project_purge(session: Session, project_id: str, options: PurgeOptions) -> int:
    rows = list(session.scalars(select(Pipeline).where(Pipeline.project_id == project_id).with_for_update()))
    if any(row.deleted_at is None and _take_out_of_location(row) for row in rows):
        _reload_later(session)
    if options.drop_tables:
        report_purged(session, "warehouse_tables", _purge_pipeline_tables(session, rows, options))
    ids = [row.id for row in rows]
    session.execute(delete(PipelineVersion).where(PipelineVersion.pipeline_id.in_(ids)))
    session.execute(delete(Pipeline).where(Pipeline.id.in_(ids)))
    for row in rows:
        session.expunge(row)
    return len(rows)


# -- the kind itself -----------------------------------------------------------------------------


def _check_restore(session: Session, row: Any) -> None:
    if row.project_id is None:
        return
    from api.projects.models import Project

    project = session.get(Project, row.project_id)
    if project is not None and project.deleted_at is not None:
        raise Conflict(
            "The pipeline's project is deleted: restore the project (it brings its pipelines back)",
            details={"project_id": row.project_id},
        )


def _after_restore(session: Session, row: Any) -> None:
    if _put_back_in_location(row):
        _redeploy_later(session, [row.id])


def _before_purge(session: Session, row: Any, options: PurgeOptions) -> dict[str, int]:
    if row.deleted_at is None and _take_out_of_location(row):
        _reload_later(session)
    if options.drop_tables:
        report_purged(session, "warehouse_tables", _purge_pipeline_tables(session, [row], options))
    return {}


register_kind(
    DeletableKind(
        kind="pipelines",
        entity_type="pipeline",
        model=Pipeline,
        check_restore=_check_restore,
        after_restore=_after_restore,
        before_purge=_before_purge,
    )
)
register_dependent(
    "projects",
    Dependent(
        kind="pipelines", soft_delete=_project_soft_delete, restore=_project_restore, purge=_project_purge
    ),
)
