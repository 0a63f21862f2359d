"""/api/v1/admin: audit trail, deleted entities (ai-etl bodies), system settings (envelope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from croniter import croniter  # type: ignore[import-untyped]
from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field, field_validator

from api.activity.service import log_activity
from api.admin import cleanup, deletion
from api.admin import schedule as cleanup_schedule
from api.admin import service as admin_service
from api.admin.schemas import (
    ENTITY_KINDS,
    ActivityLogPage,
    CleanupOldDeletions,
    CleanupOldDeletionsResult,
    DeletedEntities,
    DeletionStats,
    DevRoleProduction,
    DevRoleProductionUpdate,
    EntityKind,
    PipelineRestored,
    ProjectPurged,
    ProjectRestored,
)
from api.auth.service import Principal
from api.core import security
from api.core.errors import BadRequest
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, RequestModel, iso_utc, ok
from api.deps import ClientIP, SessionDep, require_permission
from api.users import service as users_service

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)

CanViewActivity = Annotated[Principal, Depends(require_permission("activity_logs", "view"))]
CanViewMaintenance = Annotated[Principal, Depends(require_permission("maintenance", "view"))]
CanRunMaintenance = Annotated[Principal, Depends(require_permission("maintenance", "execute"))]
CanViewSettings = Annotated[Principal, Depends(require_permission("settings", "view"))]
CanEditSettings = Annotated[Principal, Depends(require_permission("settings", "edit"))]
EntityId = Annotated[str, Path(max_length=64)]


class ActivityFilters:
    """Query parameters shared by both activity-log routes."""

    def __init__(
        self,
        action: Annotated[
            str | None, Query(max_length=64, description="exact, or a prefix ending in *")
        ] = None,
        resource_type: Annotated[str | None, Query(max_length=64)] = None,
        resource_id: Annotated[str | None, Query(max_length=64)] = None,
        status: Annotated[Literal["success", "failure"] | None, Query()] = None,
        start_date: Annotated[datetime | None, Query()] = None,
        end_date: Annotated[datetime | None, Query()] = None,
        skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> None:
        if start_date and end_date and start_date > end_date:
            raise BadRequest("start_date must not be after end_date", field="start_date")
        self.action, self.resource_type, self.resource_id = action, resource_type, resource_id
        self.status, self.start, self.end, self.skip, self.limit = status, start_date, end_date, skip, limit


def _activity_page(session: SessionDep, user_id: str | None, f: ActivityFilters) -> dict[str, object]:
    items, total = admin_service.list_activity(
        session,
        user_id=user_id,
        action=f.action,
        resource_type=f.resource_type,
        resource_id=f.resource_id,
        status=f.status,
        start=f.start,
        end=f.end,
        skip=f.skip,
        limit=f.limit,
    )
    return {
        "status": "success",
        "data": items,
        "total": total,
        "skip": f.skip,
        "limit": f.limit,
        "message": None,
    }


@router.get("/activity-logs", response_model=ActivityLogPage)
def list_activity_logs(
    _: CanViewActivity,
    session: SessionDep,
    filters: Annotated[ActivityFilters, Depends()],
    user_id: Annotated[str | None, Query(max_length=64)] = None,
) -> object:
    """The audit trail, newest first. Values of secret-looking keys in `details` are masked."""
    return _activity_page(session, user_id, filters)


@router.get("/activity-logs/{user_id}", response_model=ActivityLogPage, responses=NOT_FOUND)
def list_user_activity_logs(
    user_id: EntityId, _: CanViewActivity, session: SessionDep, filters: Annotated[ActivityFilters, Depends()]
) -> object:
    users_service.get_user(session, user_id)
    return _activity_page(session, user_id, filters)


@router.get("/settings/dev-role-production", response_model=Envelope[DevRoleProduction])
def get_dev_role_production(_: CanViewSettings, session: SessionDep) -> object:
    """Whether developer-level accounts may work in production now, and until when."""
    data = admin_service.dev_role_production(session)
    return ok(DevRoleProduction.model_validate(data).model_dump(mode="json"))


@router.put("/settings/dev-role-production", response_model=Envelope[DevRoleProduction])
def put_dev_role_production(
    body: DevRoleProductionUpdate, principal: CanEditSettings, session: SessionDep, ip: ClientIP
) -> object:
    """A temporary approval: it lapses by itself after `duration_hours` (1-168)."""
    data = admin_service.set_dev_role_production(
        session, principal.user, allow=body.allow, duration_hours=body.duration_hours, ip=ip
    )
    message = (
        f"Developer role temporarily allowed in production. Auto-expires in {body.duration_hours} hours."
        if body.allow
        else "Developer role no longer allowed in production."
    )
    return ok(DevRoleProduction.model_validate(data).model_dump(mode="json"), message)


@router.get("/deleted-entities", response_model=DeletedEntities)
def list_deleted_entities(
    _: CanViewMaintenance,
    session: SessionDep,
    entity_type: Annotated[EntityKind | None, Query()] = None,
    deleted_after: Annotated[datetime | None, Query()] = None,
    deleted_before: Annotated[datetime | None, Query()] = None,
) -> object:
    kinds: list[str] = [entity_type] if entity_type else list(ENTITY_KINDS)
    items = deletion.list_deleted(session, kinds, after=deleted_after, before=deleted_before)
    return {"items": items, "total": len(items)}


@router.get("/deletion-stats", response_model=DeletionStats)
def deletion_stats(_: CanViewMaintenance, session: SessionDep) -> object:
    return deletion.deletion_stats(session)


@router.post("/cleanup-old-deletions", response_model=CleanupOldDeletionsResult)
def cleanup_old_deletions(
    body: CleanupOldDeletions,
    principal: CanRunMaintenance,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """Purges entities soft-deleted more than `older_than_days` ago; `dry_run` (default) only counts."""
    result = deletion.cleanup_old(
        session, older_than_days=body.older_than_days, kinds=list(body.entity_types), dry_run=body.dry_run
    )
    if not body.dry_run:
        log_activity(
            session,
            principal.user.id,
            "admin.cleanup_old_deletions",
            "deletion",
            None,
            ip=ip,
            details={"older_than_days": body.older_than_days, "breakdown": result["breakdown"]},
        )
    session.commit()
    _after_commit(session, background)
    return result


def _after_commit(session: SessionDep, background: BackgroundTasks) -> None:
    """Dagster work the deletion hooks queued (reloads, redeploys) runs once the change is committed."""
    for task in deletion.pop_after_commit(session):
        background.add_task(task)


@router.post(
    "/projects/{project_id}/restore", response_model=ProjectRestored, responses={**NOT_FOUND, **CONFLICT}
)
def restore_project(
    project_id: EntityId,
    principal: CanRunMaintenance,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """Brings a soft-deleted project back with what was deleted with it; its pipelines that were
    deployed are deployed again (reload of the `aetl_pipelines` code location, in the background)."""
    _, related = deletion.restore(session, "projects", project_id)
    log_activity(
        session,
        principal.user.id,
        "project.restore",
        "project",
        project_id,
        ip=ip,
        details={"related": related},
    )
    session.commit()
    _after_commit(session, background)
    return {
        "project_id": project_id,
        "restored": True,
        "related_entities_restored": related,
        "restored_at": security.utcnow(),
    }


@router.delete("/projects/{project_id}/permanent", response_model=ProjectPurged, responses=NOT_FOUND)
def purge_project(
    project_id: EntityId,
    principal: CanRunMaintenance,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
    drop_tables: Annotated[
        bool, Query(description="also drop the warehouse tables its pipelines loaded")
    ] = False,
) -> object:
    """Deletes the project and everything it owns for good (no restore afterwards): its pipelines,
    their versions and Dagster definitions (the location reloads), and with `drop_tables` the
    platform-warehouse tables they loaded (`cascade_deleted.warehouse_tables`)."""
    cascade, size = deletion.purge(
        session, "projects", project_id, deletion.PurgeOptions(drop_tables=drop_tables)
    )
    log_activity(
        session,
        principal.user.id,
        "project.purge",
        "project",
        project_id,
        ip=ip,
        details={"cascade": cascade, "drop_tables": drop_tables},
    )
    session.commit()
    _after_commit(session, background)
    return {
        "project_id": project_id,
        "permanently_deleted": True,
        "cascade_deleted": cascade,
        "disk_space_freed_mb": deletion.mb(size),
        "disk_space_freed_bytes": size,
    }


@router.post(
    "/pipelines/{pipeline_id}/restore", response_model=PipelineRestored, responses={**NOT_FOUND, **CONFLICT}
)
def restore_pipeline(
    pipeline_id: EntityId,
    principal: CanRunMaintenance,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """Brings a soft-deleted pipeline back with all its versions; if it was deployed it is deployed
    again (`GET /pipelines/{id}/status` shows `deploying`, then `deployed`). 409 while its project is
    deleted: restore the project instead."""
    _, related = deletion.restore(session, "pipelines", pipeline_id)
    log_activity(session, principal.user.id, "pipeline.restore", "pipeline", pipeline_id, ip=ip)
    session.commit()
    _after_commit(session, background)
    return {
        "pipeline_id": pipeline_id,
        "restored": True,
        "related_entities_restored": related | {"artifacts": 0, "runs": 0},
        "restored_at": security.utcnow(),
    }


# --- system cleanup (aggregator: envelope) -----------------------------------------------------

CleanupType = Literal["activity-logs", "temp-files", "orphaned-data", "execution-logs", "expired-sessions"]


class RetentionBody(RequestModel):
    retention_days: int = Field(90, ge=1, le=36500)


class ExecutionRetentionBody(RequestModel):
    retention_days: int = Field(30, ge=1, le=36500)


class TempFilesBody(RequestModel):
    retention_hours: int = Field(24, ge=1, le=24 * 3650)


class RetentionPeriods(RequestModel):
    activity_logs_days: int = Field(90, ge=1, le=36500)
    execution_logs_days: int = Field(30, ge=1, le=36500)
    temp_files_hours: int = Field(24, ge=1, le=24 * 3650)


class CleanupScheduleUpdate(RequestModel):
    enabled: bool
    schedule: str = Field("0 2 * * *", min_length=9, max_length=100, description="5-field cron, UTC")
    retention_periods: RetentionPeriods = Field(default_factory=RetentionPeriods)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError("not a 5-field cron expression")
        return value


def _envelope(result: dict[str, Any], message: str | None = None) -> dict[str, Any]:
    return ok(jsonable_encoder(result, custom_encoder={datetime: iso_utc}), message)


@router.get("/cleanup/stats", response_model=Envelope[dict[str, Any]])
def cleanup_stats(_: CanViewMaintenance, session: SessionDep) -> object:
    """Size of the metadata DB, its last vacuum and the record counts cleanup acts on."""
    return ok(jsonable_encoder(cleanup.stats(session), custom_encoder={datetime: iso_utc}))


@router.post("/cleanup/activity-logs", response_model=Envelope[dict[str, Any]])
def cleanup_activity_logs(body: RetentionBody, principal: CanRunMaintenance, session: SessionDep) -> object:
    """Deletes activity-log entries older than `retention_days`."""
    result = cleanup.cleanup_activity_logs(session, principal.user, body.retention_days)
    return ok(jsonable_encoder(result, custom_encoder={datetime: iso_utc}))


@router.post("/cleanup/temp-files", response_model=Envelope[dict[str, Any]])
def cleanup_temp_files(
    principal: CanRunMaintenance, session: SessionDep, body: TempFilesBody | None = None
) -> object:
    """Deletes temporary files older than `retention_hours` (default 24): the embedded warehouse's
    spill folder, python-step work folders and named pipes that killed runs left behind, and Excel
    exports whose download link has expired (never one whose link still works)."""
    hours = (body or TempFilesBody()).retention_hours
    return _envelope(cleanup.cleanup_temp_files(session, principal.user, hours))


@router.post("/cleanup/orphaned-data", response_model=Envelope[dict[str, Any]])
def cleanup_orphaned_data(principal: CanRunMaintenance, session: SessionDep) -> object:
    """Drops warehouse tables loaded by pipelines that no longer exist (purged without their tables)
    and wipes their Dagster asset records; drops staging tables untouched for a day; deletes
    compute-log folders of runs Dagster no longer has. Tables a surviving pipeline loads stay."""
    return _envelope(cleanup.cleanup_orphaned_data(session, principal.user))


@router.post("/cleanup/execution-logs", response_model=Envelope[dict[str, Any]])
def cleanup_execution_logs(
    body: ExecutionRetentionBody, principal: CanRunMaintenance, session: SessionDep
) -> object:
    """Deletes finished Dagster runs created more than `retention_days` ago, with their event logs
    (through Dagster's run storage) and compute logs."""
    return _envelope(cleanup.cleanup_execution_logs(session, principal.user, body.retention_days))


@router.post("/cleanup/expired-sessions", response_model=Envelope[dict[str, Any]])
def cleanup_expired_sessions(principal: CanRunMaintenance, session: SessionDep) -> object:
    """Deletes expired refresh tokens (sessions) and spent or expired mailed tokens."""
    result = cleanup.cleanup_expired_sessions(session, principal.user)
    return ok(jsonable_encoder(result, custom_encoder={datetime: iso_utc}))


@router.post("/cleanup/database-vacuum", response_model=Envelope[dict[str, Any]])
def cleanup_database_vacuum(principal: CanRunMaintenance, session: SessionDep) -> object:
    """`VACUUM ANALYZE` on the metadata database."""
    result = cleanup.database_vacuum(session, principal.user)
    return ok(jsonable_encoder(result, custom_encoder={datetime: iso_utc}))


@router.post("/cleanup/all", response_model=Envelope[dict[str, Any]])
def cleanup_all(body: RetentionBody, principal: CanRunMaintenance, session: SessionDep) -> object:
    """Every cleanup in turn (activity logs, temp files, orphaned data, execution logs, VACUUM ANALYZE,
    expired sessions); a step that fails (Dagster down) is reported and the others still run."""
    result = cleanup.cleanup_all(session, principal.user, body.retention_days)
    return ok(jsonable_encoder(result, custom_encoder={datetime: iso_utc}))


@router.get("/cleanup/estimate/{cleanup_type}", response_model=Envelope[dict[str, Any]])
def cleanup_estimate(
    cleanup_type: CleanupType,
    _: CanViewMaintenance,
    session: SessionDep,
    retention_days: Annotated[int, Query(ge=1, le=36500)] = 90,
    retention_hours: Annotated[int, Query(ge=1, le=24 * 3650)] = 24,
) -> object:
    """What a cleanup would remove, counted without deleting (`retention_hours` is for temp-files)."""
    return _envelope(cleanup.estimate(session, cleanup_type, retention_days, retention_hours))


class CleanupHistoryPage(BaseModel):
    """The aggregator spec puts the paging beside `data`."""

    status: Literal["success"] = "success"
    data: list[dict[str, Any]]
    total: int
    page: int
    limit: int
    message: str | None = None


@router.get("/cleanup/history", response_model=CleanupHistoryPage)
def cleanup_history(
    _: CanViewMaintenance,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    operation: Annotated[str | None, Query(max_length=64)] = None,
    start_date: Annotated[datetime | None, Query()] = None,
    end_date: Annotated[datetime | None, Query()] = None,
) -> object:
    items, total = cleanup.history(
        session, page=page, limit=limit, operation=operation, start=start_date, end=end_date
    )
    body = ok(jsonable_encoder(items, custom_encoder={datetime: iso_utc}))
    return body | {"total": total, "page": page, "limit": limit}


@router.get("/cleanup/schedule", response_model=Envelope[dict[str, Any]])
def get_cleanup_schedule(_: CanViewMaintenance, session: SessionDep) -> object:
    """The cleanup schedule: the setting, its next and last run, and the Dagster schedule
    (`system_cleanup_schedule` of the `aetl` location) as Dagster reports it (`dagster`: null when
    Dagster does not answer)."""
    return _envelope(cleanup_schedule.describe(session))


@router.put("/cleanup/schedule", response_model=Envelope[dict[str, Any]])
def put_cleanup_schedule(
    body: CleanupScheduleUpdate,
    principal: CanRunMaintenance,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """Saves the schedule; the `aetl` code location reloads (it reads the cron at load) and the Dagster
    schedule is started or stopped, in the background (GET shows it under `dagster`)."""
    value = body.model_dump(mode="json")
    cleanup_schedule.update(session, principal.user, value, ip)
    background.add_task(cleanup_schedule.apply_in_dagster, body.enabled)
    data = {**value, "next_run": cleanup_schedule.next_run(body.schedule) if body.enabled else None}
    return _envelope(data, "Cleanup schedule updated successfully")
