"""Typed answers of the Dagster client (pydantic, so routes can embed them in response models)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    NOT_STARTED = "NOT_STARTED"
    MANAGED = "MANAGED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUSPENDED = "SUSPENDED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED})


class InstigationStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunStats(_Model):
    steps_succeeded: int = 0
    steps_failed: int = 0
    materializations: int = 0
    expectations: int = 0
    enqueued_time: datetime | None = None
    launch_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


class Run(_Model):
    run_id: str
    job_name: str
    status: RunStatus
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    tags: dict[str, str] = {}
    run_config: dict[str, Any] = {}
    asset_selection: list[str] = []
    can_terminate: bool = False
    root_run_id: str | None = None
    parent_run_id: str | None = None
    stats: RunStats | None = None
    # metadata of each asset materialization the run recorded (only from the *_with_metadata calls)
    materialization_metadata: list[dict[str, Any]] = []

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class RunPage(_Model):
    items: list[Run]
    # Pass back as `cursor` for the next (older) page; None when this page was the last.
    next_cursor: str | None = None
    # all runs matching the filter (only from list_runs_with_metadata)
    total: int | None = None


class RunEvent(_Model):
    event_type: str  # GraphQL typename, e.g. RunSuccessEvent, LogMessageEvent
    dagster_event_type: str | None = None  # e.g. STEP_SUCCESS, ASSET_MATERIALIZATION; None for logs
    message: str
    timestamp: datetime
    level: str
    step_key: str | None = None
    error: str | None = None  # message of the Python error of failure events (no stack)


class RunLogs(_Model):
    run_id: str
    events: list[RunEvent]
    cursor: str | None
    has_more: bool


class CodeLocation(_Model):
    name: str
    load_status: str  # LOADING | LOADED
    repositories: list[str] = []
    # The location failed to load (e.g. a broken dbt model); Dagster's text is in `load_error_detail`.
    load_failed: bool = False
    load_error_detail: str | None = None


LocationReload = CodeLocation  # what reload_location returns: the location after the reload


class Schedule(_Model):
    name: str
    location: str
    job_name: str
    cron_schedule: str
    execution_timezone: str | None = None
    description: str | None = None
    status: InstigationStatus
    default_status: InstigationStatus
    next_tick_at: datetime | None = None


class RepositoryContents(_Model):
    """What one code location's repository holds right now (what a deploy produced)."""

    location: str
    jobs: list[str] = []
    schedules: list[Schedule] = []
    # asset key ("a/b/c") -> its upstream keys
    assets: dict[str, list[str]] = {}


class Sensor(_Model):
    name: str
    location: str
    job_names: list[str] = []
    description: str | None = None
    status: InstigationStatus
    default_status: InstigationStatus
    min_interval_seconds: int


class AssetMaterialization(_Model):
    asset_key: list[str]
    run_id: str
    timestamp: datetime
    partition: str | None = None
    step_key: str | None = None
    metadata: dict[str, Any] = {}


class DaemonStatus(_Model):
    daemon_type: str
    required: bool
    healthy: bool | None
    last_heartbeat_at: datetime | None = None
    last_heartbeat_errors: list[str] = []


class DaemonHealth(_Model):
    daemons: list[DaemonStatus]

    @property
    def healthy(self) -> bool:
        """All required daemons beat recently (what /health/detailed reports)."""
        return bool(self.daemons) and all(d.healthy for d in self.daemons if d.required)


def from_epoch(value: float | str | None, *, millis: bool = False) -> datetime | None:
    """Dagster gives seconds (floats) for runs and milliseconds (strings) for events."""
    if value is None or value == "":
        return None
    seconds = float(value) / (1000.0 if millis else 1.0)
    return datetime.fromtimestamp(seconds, tz=UTC)
