"""Request and response bodies of the pipelines domain (both specs' shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.core.schemas import RequestModel, UTCDateTime
from orchestration.specs.pipeline import MAX_DESCRIPTION_CHARS

# letters (any script), digits, spaces and a little punctuation: no quotes, `;` or backticks
PipelineName = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\w][\w .,:()&+/#@!?-]*$")
]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)]
ProjectId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Cron = Annotated[str, StringConstraints(max_length=120)]
Json = dict[str, Any]
StepList = Annotated[list[Json], Field(max_length=100)]


class _DocumentFields(RequestModel):
    """The document's parts in either spec's words; the service normalizes them into one document."""

    description: Description | None = None
    sources: StepList | None = None
    transformations: StepList | None = None
    targets: StepList | None = None
    source_config: Json | None = Field(default=None, description="aggregator spec: one source")
    transformation_config: Json | list[Json] | None = Field(
        default=None, description="aggregator spec: one SQL step ({sql}) or {transformations: [...]}"
    )
    destination_config: Json | None = Field(default=None, description="aggregator spec: one target")
    schedule: Cron | None = None
    schedule_timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    triggers: Annotated[list[Json], Field(max_length=20)] | None = None
    parameters: Json | None = None
    tags: dict[str, Annotated[str, StringConstraints(max_length=200)]] | None = None


class PipelineCreate(_DocumentFields):
    project_id: ProjectId | None = None
    name: PipelineName
    is_active: bool | None = Field(default=None, description="aggregator spec; ignored until deployed")
    version_name: Annotated[str, StringConstraints(max_length=200)] | None = None


class PipelineUpdate(_DocumentFields):
    project_id: ProjectId | None = None
    name: PipelineName | None = None
    status: Literal["active", "paused"] | None = Field(
        default=None, description="paused: the pipeline's schedules stop (active: they run again)"
    )
    is_active: bool | None = Field(default=None, description="aggregator spec: same as status")
    version_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    change_description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class RunRequest(RequestModel):
    parameters: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        Annotated[str, StringConstraints(max_length=4096)]
        | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
        | float
        | bool,
    ] = Field(default_factory=dict, max_length=50)


class VersionCreate(_DocumentFields):
    """A named version: the active document with the given changes (none: a named snapshot)."""

    name: PipelineName | None = None
    version_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    change_description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class TriggerCreate(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    pipeline_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    trigger_type: Literal["cron", "manual"] = "cron"
    config: Json = Field(default_factory=dict)
    enabled: bool = True


# -- responses ------------------------------------------------------------------------------------


class RunMetrics(BaseModel):
    extraction_time_ms: float | None = None
    transformation_time_ms: float | None = None
    loading_time_ms: float | None = None


class RunPublic(BaseModel):
    id: str
    run_id: str
    pipeline_id: str
    status: str = Field(description="queued, running, success, failed, cancelling, cancelled")
    dagster_status: str
    version: int | None = None
    triggered_by: str | None = None
    created_at: UTCDateTime
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None
    duration_seconds: float | None = None
    rows_processed: int | None = None
    metrics: RunMetrics
    parameters: dict[str, Any] = {}
    airflow_dag_id: str
    airflow_run_id: str
    dagster_job_name: str
    dagster_run_id: str


class LastRun(BaseModel):
    id: str
    status: str
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None
    rows_processed: int | None = None


class PipelineSummary(BaseModel):
    id: str
    project_id: str | None
    name: str
    description: str | None
    status: str
    is_active: bool
    version: int | None
    schedule: str | None
    deploy_status: str
    dagster_job_name: str
    created_at: UTCDateTime
    updated_at: UTCDateTime
    last_run: LastRun | None = None


class PipelineList(BaseModel):
    items: list[PipelineSummary]
    total: int
    limit: int
    offset: int


class PipelineAggregatorList(BaseModel):
    items: list[PipelineSummary]
    total: int
    skip: int
    limit: int


class PipelinePublic(PipelineSummary):
    owner_id: str | None
    active_version_id: str | None
    latest_version: int | None
    deployed_version: int | None
    deploy_error: str | None
    deployed_at: UTCDateTime | None
    airflow_dag_id: str
    schedule_timezone: str
    sources: list[Json]
    transformations: list[Json]
    targets: list[Json]
    triggers: list[Json]
    parameters: Json
    tags: dict[str, str]
    source_config: Json | None
    transformation_config: Json | None
    destination_config: Json | None
    version_created: bool | None = Field(
        default=None, description="on create/update: whether this request made a new version"
    )


class DeployState(BaseModel):
    pipeline_id: str
    status: str = Field(description="deploying, deployed or failed")
    deploy_status: str
    deploy_error: str | None
    version: int | None
    version_id: str | None
    airflow_dag_id: str
    dagster_job_name: str
    dagster_location: str
    deployment_time: UTCDateTime | None


class RunHistory(BaseModel):
    items: list[RunPublic]
    total: int
    limit: int
    offset: int


class RunHistoryEnvelopeData(BaseModel):
    items: list[RunPublic]
    total: int
    skip: int
    limit: int


class ScheduleState(BaseModel):
    name: str
    trigger_id: str
    cron: str
    timezone: str | None
    status: str = Field(description="RUNNING or STOPPED, as Dagster has it")


class PipelineStatus(BaseModel):
    pipeline_id: str
    status: str
    is_active: bool
    is_running: bool
    deploy_status: str
    deploy_error: str | None
    active_version: int | None
    deployed_version: int | None
    dagster_job_name: str
    current_run: RunPublic | None
    schedules: list[ScheduleState]


class TriggerPublic(BaseModel):
    trigger_id: str
    name: str
    pipeline_id: str
    trigger_type: str
    status: str
    enabled: bool
    cron_expression: str | None
    next_run: UTCDateTime | None
    version: int
    created_at: UTCDateTime


class ManualTriggerRun(BaseModel):
    run_id: str
    pipeline_id: str
    status: str
    started_at: UTCDateTime
    version: int | None
    airflow_dag_id: str
    airflow_run_id: str
    dagster_job_name: str
    dagster_run_id: str


class RunStarted(ManualTriggerRun):
    pass


class VersionPublic(BaseModel):
    id: str
    pipeline_id: str
    version_number: int
    version_name: str | None
    change_description: str | None
    content_hash: str
    created_by: str | None
    created_at: UTCDateTime
    is_active: bool
    is_deployed: bool


class VersionDetail(VersionPublic):
    document: Json


class VersionSummary(BaseModel):
    pipeline_id: str
    total_versions: int
    latest_version: VersionPublic | None
    active_version: VersionPublic | None
    deployed_version: VersionPublic | None
    first_created_at: UTCDateTime | None
    last_created_at: UTCDateTime | None


class VersionChange(BaseModel):
    path: str
    change: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class VersionComparison(BaseModel):
    pipeline_id: str
    version_1: VersionPublic
    version_2: VersionPublic
    identical: bool
    changes: list[VersionChange]
    summary: dict[str, int]
