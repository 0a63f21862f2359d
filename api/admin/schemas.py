"""Admin bodies: activity-log pages (envelope with paging beside `data`), deletion and settings."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field

from api.admin.deletion import SPEC_KINDS
from api.core.schemas import RequestModel, ResponseModel, UTCDateTime

EntityKind = Literal["projects", "pipelines", "artifacts", "runs"]
ENTITY_KINDS: list[EntityKind] = list(get_args(EntityKind))
assert set(ENTITY_KINDS) == set(SPEC_KINDS)


class ActivityLogEntry(ResponseModel):
    id: int
    user_id: str | None
    username: str | None
    action: str
    status: str
    resource_type: str | None
    resource_id: str | None
    details: dict[str, Any]
    ip_address: str | None
    user_agent: str | None = None
    request_id: str | None
    timestamp: UTCDateTime


class ActivityLogPage(ResponseModel):
    """The aggregator spec puts the paging beside `data`."""

    status: Literal["success"] = "success"
    data: list[ActivityLogEntry]
    total: int
    skip: int
    limit: int
    message: str | None = None


class DeletedEntity(ResponseModel):
    entity_type: str
    entity_id: str
    entity_name: str
    deleted_by: str | None
    deleted_at: UTCDateTime
    can_restore: bool


class DeletedEntities(ResponseModel):
    items: list[DeletedEntity]
    total: int


class DeletionStats(ResponseModel):
    total_deleted: int
    by_type: dict[str, int]
    oldest_deletion: UTCDateTime | None
    disk_space_recoverable_mb: float
    disk_space_recoverable_bytes: int


class CleanupOldDeletions(RequestModel):
    older_than_days: int = Field(90, ge=0, le=36500)
    entity_types: list[EntityKind] = Field(default_factory=lambda: list(ENTITY_KINDS), max_length=4)
    dry_run: bool = True


class CleanupOldDeletionsResult(ResponseModel):
    dry_run: bool
    entities_to_delete: int
    disk_space_to_free_mb: float
    disk_space_to_free_bytes: int
    breakdown: dict[str, int]
    older_than_days: int
    cutoff: UTCDateTime


class ProjectRestored(ResponseModel):
    project_id: str
    restored: bool
    related_entities_restored: dict[str, int]
    restored_at: UTCDateTime


class PipelineRestored(ResponseModel):
    pipeline_id: str
    restored: bool
    # runs live in Dagster's run storage and are never soft-deleted: always 0
    related_entities_restored: dict[str, int]
    restored_at: UTCDateTime


class ProjectPurged(ResponseModel):
    project_id: str
    permanently_deleted: bool
    cascade_deleted: dict[str, int]
    disk_space_freed_mb: float
    disk_space_freed_bytes: int


class DevRoleProduction(ResponseModel):
    allowed: bool
    expires_at: UTCDateTime | None
    environment: str
    duration_hours: int | None = None
    approved_by: str | None = None


class DevRoleProductionUpdate(RequestModel):
    allow: bool
    duration_hours: int = Field(24, ge=1, le=168)
