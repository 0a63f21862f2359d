"""/api/v1/pipelines, /pipeline-versions, /mvp/triggers: thin routes over the pipelines service.

ai-etl endpoints answer with that spec's bare bodies; aggregator-only ones with the envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Path, Query, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.admin.deletion import pop_after_commit
from api.auth.service import Principal
from api.core.errors import NotFound
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, ok
from api.dagster_client import DagsterClientError, Run
from api.deps import ClientIP, SessionDep, require_permission
from api.pipelines import service
from api.pipelines.models import Pipeline, PipelineVersion
from api.pipelines.run_cache import ACTIVE_FRESH_SECONDS
from api.pipelines.schemas import (
    DeployState,
    ManualTriggerRun,
    PipelineCreate,
    PipelineList,
    PipelinePublic,
    PipelineStatus,
    PipelineSummary,
    PipelineUpdate,
    RunHistory,
    RunHistoryEnvelopeData,
    RunPublic,
    RunRequest,
    RunStarted,
    TriggerCreate,
    TriggerPublic,
    VersionComparison,
    VersionCreate,
    VersionDetail,
    VersionPublic,
    VersionSummary,
)
from orchestration.specs.pipeline_plan import LOCATION, TAG_PIPELINE, TAG_TRIGGERED_BY, TAG_VERSION, job_name

logger = logging.getLogger("api.pipelines")

router = APIRouter(tags=["pipelines"], responses=ERROR_RESPONSES)

CanView = Annotated[Principal, Depends(require_permission("pipelines", "view"))]
CanCreate = Annotated[Principal, Depends(require_permission("pipelines", "create"))]
CanEdit = Annotated[Principal, Depends(require_permission("pipelines", "edit"))]
CanDelete = Annotated[Principal, Depends(require_permission("pipelines", "delete"))]
CanExecute = Annotated[Principal, Depends(require_permission("pipelines", "execute"))]

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
# bounded so a huge number is a 422, never an overflow in the database
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
# ids are short ASCII (`pipe_…`, `pver_…`, Dagster run UUIDs): anything else is a 422, never a database error
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
PipelineId = Annotated[str, Path(pattern=ID_PATTERN, description="pipeline id")]
VersionId = Annotated[str, Path(pattern=ID_PATTERN, description="pipeline version id")]
RunId = Annotated[str, Path(pattern=ID_PATTERN, description="Dagster run id")]


# -- shaping --------------------------------------------------------------------------------------


def run_public(run: Run, pipeline_id: str) -> dict[str, Any]:
    return run_model(run, pipeline_id).model_dump(mode="json")


def run_model(run: Run, pipeline_id: str) -> RunPublic:
    """The run as the response model (list routes return models: FastAPI then serializes once
    instead of re-validating a dumped dict)."""
    rows, timings = service.run_figures(run)
    version = run.tags.get(TAG_VERSION)
    return RunPublic(
        id=run.run_id,
        run_id=run.run_id,
        pipeline_id=pipeline_id,
        status=service.RUN_STATUS_NAMES[run.status],
        dagster_status=run.status.value,
        version=int(version) if version and version.isdigit() else None,
        triggered_by=run.tags.get(TAG_TRIGGERED_BY),
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.ended_at,
        duration_seconds=run.duration_seconds,
        rows_processed=rows,
        metrics=timings,  # type: ignore[arg-type]
        parameters=service.run_parameters(run),
        airflow_dag_id=run.job_name,
        airflow_run_id=run.run_id,
        dagster_job_name=run.job_name,
        dagster_run_id=run.run_id,
    )


def _last_run(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    rows, _ = service.run_figures(run)
    return {
        "id": run.run_id,
        "status": service.RUN_STATUS_NAMES[run.status],
        "started_at": run.started_at,
        "finished_at": run.ended_at,
        "rows_processed": rows,
    }


def _last_runs(pipeline_ids: list[str]) -> dict[str, Run | None]:
    """Lists and details still answer when Dagster does not (without last_run)."""
    try:
        return service.latest_runs(pipeline_ids)
    except DagsterClientError as error:
        logger.warning("last runs unavailable: %s", error.message)
        return {}


def _short_life_while_running(request: Request, runs: Iterable[Run | None]) -> None:
    """An answer showing a run not yet finished is kept by the response cache for a moment only."""
    if not service.runs_settled(runs):
        request.state.cache_seconds = ACTIVE_FRESH_SECONDS


def summary(pipeline: Pipeline, version: PipelineVersion | None, last_run: Run | None) -> dict[str, Any]:
    return summary_model(pipeline, version, last_run).model_dump(mode="json")


def summary_model(
    pipeline: Pipeline, version: PipelineVersion | None, last_run: Run | None
) -> PipelineSummary:
    document = version.document if version else {}
    return PipelineSummary(
        id=pipeline.id,
        project_id=pipeline.project_id,
        name=pipeline.name,
        description=pipeline.description,
        status=pipeline.status,
        is_active=pipeline.status == "active",
        version=version.number if version else None,
        schedule=document.get("schedule"),
        deploy_status=pipeline.deploy_status,
        dagster_job_name=job_name(pipeline.id),
        created_at=pipeline.created_at,
        updated_at=pipeline.updated_at,
        last_run=_last_run(last_run),  # type: ignore[arg-type]
    )


def detail(
    session: Session,
    pipeline: Pipeline,
    version: PipelineVersion | None = None,
    *,
    version_created: bool | None = None,
    with_last_run: bool = True,
) -> dict[str, Any]:
    version = version or service.get_version(session, pipeline.active_version_id)
    assert version is not None
    document = version.document
    latest = session.scalar(
        select(func.max(PipelineVersion.number)).where(PipelineVersion.pipeline_id == pipeline.id)
    )
    deployed = service.get_version(session, pipeline.deployed_version_id)
    service.release_connection(session)
    last = _last_runs([pipeline.id]).get(pipeline.id) if with_last_run else None
    transformations = list(document.get("transformations") or [])
    return PipelinePublic(
        **summary(pipeline, version, last),
        owner_id=pipeline.owner_id,
        active_version_id=pipeline.active_version_id,
        latest_version=latest,
        deployed_version=deployed.number if deployed else None,
        deploy_error=pipeline.deploy_error,
        deployed_at=pipeline.deployed_at,
        airflow_dag_id=job_name(pipeline.id),
        schedule_timezone=document.get("schedule_timezone", "UTC"),
        sources=list(document.get("sources") or []),
        transformations=transformations,
        targets=list(document.get("targets") or []),
        triggers=list(document.get("triggers") or []),
        parameters=dict(document.get("parameters") or {}),
        tags=dict(document.get("tags") or {}),
        source_config=(document.get("sources") or [None])[0],
        transformation_config={"transformations": transformations} if transformations else None,
        destination_config=(document.get("targets") or [None])[0],
        version_created=version_created,
    ).model_dump(mode="json")


def version_public(
    version: PipelineVersion, pipeline: Pipeline, *, with_document: bool = False
) -> dict[str, Any]:
    model = VersionDetail if with_document else VersionPublic
    values: dict[str, Any] = {
        "id": version.id,
        "pipeline_id": version.pipeline_id,
        "version_number": version.number,
        "version_name": version.version_name,
        "change_description": version.change_description,
        "content_hash": version.content_hash,
        "created_by": version.created_by,
        "created_at": version.created_at,
        "is_active": version.id == pipeline.active_version_id,
        "is_deployed": version.id == pipeline.deployed_version_id,
    }
    if with_document:
        values["document"] = version.document
    return model(**values).model_dump(mode="json")


def deploy_state(session: Session, pipeline: Pipeline) -> dict[str, Any]:
    version = service.get_version(session, pipeline.deployed_version_id)
    state = pipeline.deploy_status
    return DeployState(
        pipeline_id=pipeline.id,
        status=state,
        deploy_status=state,
        deploy_error=pipeline.deploy_error,
        version=version.number if version else None,
        version_id=version.id if version else None,
        airflow_dag_id=job_name(pipeline.id),
        dagster_job_name=job_name(pipeline.id),
        dagster_location=LOCATION,
        deployment_time=pipeline.deployed_at or pipeline.updated_at,
    ).model_dump(mode="json")


def run_started(
    run: Run, pipeline_id: str, version: PipelineVersion, status_word: str | None = None
) -> dict[str, Any]:
    return RunStarted(
        run_id=run.run_id,
        pipeline_id=pipeline_id,
        status=status_word or service.RUN_STATUS_NAMES[run.status],
        started_at=run.created_at,
        version=version.number,
        airflow_dag_id=run.job_name,
        airflow_run_id=run.run_id,
        dagster_job_name=run.job_name,
        dagster_run_id=run.run_id,
    ).model_dump(mode="json")


# -- pipelines (ai-etl bodies) ---------------------------------------------------------------------


@router.get("/pipelines", response_model=PipelineList)
def list_pipelines(
    request: Request,
    _: CanView,
    session: SessionDep,
    limit: Limit = 20,
    offset: Offset = 0,
    skip: Annotated[
        int | None, Query(ge=0, le=1_000_000, description="aggregator spec: same as offset")
    ] = None,
    status: Annotated[str | None, Query(pattern="^(draft|active|paused|failed)$")] = None,
    project_id: Annotated[str | None, Query(max_length=64)] = None,
    is_active: bool | None = None,
) -> object:
    offset = skip if skip is not None else offset
    rows, total = service.list_pipelines(
        session, limit=limit, offset=offset, status=status, project_id=project_id, is_active=is_active
    )
    service.release_connection(session)
    last = _last_runs([p.id for p, _ in rows]) if rows else {}
    _short_life_while_running(request, last.values())
    items = [summary_model(p, v, last.get(p.id)) for p, v in rows]
    return PipelineList(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/pipelines", status_code=status.HTTP_201_CREATED, response_model=PipelinePublic, responses=CONFLICT
)
def create_pipeline(body: PipelineCreate, principal: CanCreate, session: SessionDep, ip: ClientIP) -> object:
    """Either spec's body: `sources`/`transformations`/`targets` or `source_config`/
    `transformation_config`/`destination_config`; both become the same document (version 1)."""
    pipeline, version = service.create_pipeline(session, principal.user, body, ip)
    return detail(session, pipeline, version, version_created=True, with_last_run=False)


@router.get("/pipelines/{pipeline_id}", response_model=PipelinePublic, responses=NOT_FOUND)
def get_pipeline(pipeline_id: PipelineId, _: CanView, session: SessionDep) -> object:
    return detail(session, service.get_pipeline(session, pipeline_id))


@router.put("/pipelines/{pipeline_id}", response_model=PipelinePublic, responses={**NOT_FOUND, **CONFLICT})
def update_pipeline(
    pipeline_id: PipelineId,
    body: PipelineUpdate,
    principal: CanEdit,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """A change makes a new version (the active one); the same document again makes none."""
    pipeline, version, created, reload = service.update_pipeline(
        session, principal.user, pipeline_id, body, ip
    )
    if reload:
        background.add_task(service.reload_in_background, pipeline.id)
    return detail(session, pipeline, version, version_created=created)


@router.delete("/pipelines/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_pipeline(
    pipeline_id: PipelineId,
    principal: CanDelete,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> Response:
    """Soft delete; its queued and running runs are terminated, and a deployed pipeline's asset, job and
    schedules leave Dagster (location reload)."""
    reload = service.delete_pipeline(session, principal.user, pipeline_id, ip)
    for task in pop_after_commit(session):  # stop its runs first
        background.add_task(task)
    if reload:
        background.add_task(service.undeploy_in_background)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/pipelines/{pipeline_id}/deploy", response_model=DeployState, responses=NOT_FOUND)
def deploy_pipeline(
    pipeline_id: PipelineId,
    principal: CanEdit,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """Deploys the active version: answers at once (`deploying`); the reload of the `aetl_pipelines`
    code location finishes in the background (`GET /pipelines/{id}/status` shows the outcome)."""
    pipeline = service.start_deploy(session, principal.user, pipeline_id, ip)
    background.add_task(service.finish_deploy, pipeline.id, pipeline.deployed_version_id)
    return deploy_state(session, pipeline)


@router.post(
    "/pipelines/{pipeline_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunStarted,
    responses={**NOT_FOUND, **CONFLICT},
)
def run_pipeline(
    pipeline_id: PipelineId,
    principal: CanExecute,
    session: SessionDep,
    ip: ClientIP,
    body: Annotated[RunRequest | None, Body()] = None,
) -> object:
    """Launches a Dagster run of the deployed version; parameters become run config."""
    parameters = body.parameters if body else {}
    run, version = service.launch_run(session, principal.user, pipeline_id, parameters, "api", ip)
    return run_started(run, pipeline_id, version)


@router.get("/pipelines/{pipeline_id}/runs", response_model=RunHistory, responses=NOT_FOUND)
def list_runs(
    request: Request,
    pipeline_id: PipelineId,
    _: CanView,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> object:
    """From Dagster's run storage; rows and phase timings from the runs' materialization metadata."""
    service.get_pipeline(session, pipeline_id)
    service.release_connection(session)
    runs, total = service.list_runs(pipeline_id, limit=limit, offset=offset, status=status)
    _short_life_while_running(request, runs)
    items = [run_model(r, pipeline_id) for r in runs]
    return RunHistory(items=items, total=total, limit=limit, offset=offset)


# -- pipelines (aggregator-only: envelope) ---------------------------------------------------------


@router.post(
    "/pipelines/{pipeline_id}/execute",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Envelope[RunStarted],
    responses={**NOT_FOUND, **CONFLICT},
)
def execute_pipeline(
    pipeline_id: PipelineId,
    principal: CanExecute,
    session: SessionDep,
    ip: ClientIP,
    body: Annotated[RunRequest | None, Body()] = None,
) -> object:
    """Same as `POST /pipelines/{id}/run`, in the aggregator's envelope."""
    parameters = body.parameters if body else {}
    run, version = service.launch_run(session, principal.user, pipeline_id, parameters, "api", ip)
    return ok(run_started(run, pipeline_id, version), "Pipeline execution started")


@router.get(
    "/pipelines/{pipeline_id}/history", response_model=Envelope[RunHistoryEnvelopeData], responses=NOT_FOUND
)
def pipeline_history(
    pipeline_id: PipelineId,
    _: CanView,
    session: SessionDep,
    skip: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> object:
    """Same as `GET /pipelines/{id}/runs`, in the aggregator's envelope."""
    service.get_pipeline(session, pipeline_id)
    service.release_connection(session)
    runs, total = service.list_runs(pipeline_id, limit=limit, offset=skip, status=status)
    items = [run_public(r, pipeline_id) for r in runs]
    return ok({"items": items, "total": total, "skip": skip, "limit": limit})


@router.get("/pipelines/{pipeline_id}/status", response_model=Envelope[PipelineStatus], responses=NOT_FOUND)
def pipeline_status(pipeline_id: PipelineId, _: CanView, session: SessionDep) -> object:
    """Deploy state, the newest run (from Dagster) and each schedule as Dagster has it."""
    pipeline, latest, schedules = service.pipeline_status(session, pipeline_id)
    active = service.get_version(session, pipeline.active_version_id)
    deployed = service.get_version(session, pipeline.deployed_version_id)
    data = PipelineStatus(
        pipeline_id=pipeline.id,
        status=pipeline.status,
        is_active=pipeline.status == "active",
        is_running=bool(latest and not latest.status.finished),
        deploy_status=pipeline.deploy_status,
        deploy_error=pipeline.deploy_error,
        active_version=active.number if active else None,
        deployed_version=deployed.number if deployed else None,
        dagster_job_name=job_name(pipeline.id),
        current_run=run_public(latest, pipeline.id) if latest else None,  # type: ignore[arg-type]
        schedules=schedules,  # type: ignore[arg-type]
    )
    return ok(data.model_dump(mode="json"))


@router.post(
    "/pipelines/{pipeline_id}/runs/{run_id}/terminate",
    response_model=Envelope[RunPublic],
    responses=NOT_FOUND,
)
def terminate_run(pipeline_id: PipelineId, run_id: RunId, _: CanExecute, session: SessionDep) -> object:
    """Stops a queued or running run of this pipeline (Dagster's terminate)."""
    service.get_pipeline(session, pipeline_id)
    client = service.dagster()
    run = client.get_run(run_id)
    if run.tags.get(TAG_PIPELINE) != pipeline_id:
        raise NotFound("Run not found", details={"pipeline_id": pipeline_id, "run_id": run_id})
    client.terminate_run(run_id)
    service.runs_changed(pipeline_id)
    return ok(run_public(client.get_run_with_metadata(run_id), pipeline_id), "Termination requested")


# -- triggers (ai-etl) -----------------------------------------------------------------------------


@router.post(
    "/mvp/triggers/create",
    status_code=status.HTTP_201_CREATED,
    response_model=TriggerPublic,
    responses=NOT_FOUND,
    tags=["triggers"],
)
def create_trigger(
    body: TriggerCreate, principal: CanEdit, session: SessionDep, ip: ClientIP, background: BackgroundTasks
) -> object:
    """A cron trigger becomes a Dagster schedule (running when `enabled`); it is part of the pipeline's
    document, so it makes a new version; a deployed pipeline is redeployed with it."""
    pipeline, version, trigger, redeploy = service.create_trigger(session, principal.user, body, ip)
    if redeploy:
        background.add_task(service.finish_deploy, pipeline.id, version.id)
    return TriggerPublic(
        trigger_id=trigger.id,
        name=trigger.name,
        pipeline_id=pipeline.id,
        trigger_type=trigger.type,
        status="active" if trigger.enabled else "inactive",
        enabled=trigger.enabled,
        cron_expression=trigger.cron,
        next_run=service.next_fire_time(trigger),
        version=version.number,
        created_at=version.created_at,
    ).model_dump(mode="json")


@router.post(
    "/mvp/triggers/manual/{pipeline_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ManualTriggerRun,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["triggers"],
)
def manual_trigger(
    pipeline_id: PipelineId,
    principal: CanExecute,
    session: SessionDep,
    ip: ClientIP,
    body: Annotated[RunRequest | None, Body()] = None,
) -> object:
    parameters = body.parameters if body else {}
    run, version = service.launch_run(session, principal.user, pipeline_id, parameters, "manual", ip)
    return run_started(run, pipeline_id, version, status_word="triggered")


# -- versions (aggregator: envelope) ---------------------------------------------------------------

versions = APIRouter(prefix="/pipeline-versions", tags=["pipeline-versions"], responses=ERROR_RESPONSES)


@versions.get(
    "/pipelines/{pipeline_id}/versions", response_model=Envelope[list[VersionPublic]], responses=NOT_FOUND
)
def list_versions(pipeline_id: PipelineId, _: CanView, session: SessionDep) -> object:
    """Newest first."""
    pipeline = service.get_pipeline(session, pipeline_id)
    return ok([version_public(v, pipeline) for v in service.list_versions(session, pipeline)])


@versions.get(
    "/pipelines/{pipeline_id}/versions/summary", response_model=Envelope[VersionSummary], responses=NOT_FOUND
)
def version_summary(pipeline_id: PipelineId, _: CanView, session: SessionDep) -> object:
    pipeline = service.get_pipeline(session, pipeline_id)
    rows = service.list_versions(session, pipeline)
    by_id = {v.id: v for v in rows}

    def public(version: PipelineVersion | None) -> dict[str, Any] | None:
        return version_public(version, pipeline) if version else None

    return ok(
        VersionSummary(
            pipeline_id=pipeline.id,
            total_versions=len(rows),
            latest_version=public(rows[0] if rows else None),  # type: ignore[arg-type]
            active_version=public(by_id.get(pipeline.active_version_id or "")),  # type: ignore[arg-type]
            deployed_version=public(by_id.get(pipeline.deployed_version_id or "")),  # type: ignore[arg-type]
            first_created_at=rows[-1].created_at if rows else None,
            last_created_at=rows[0].created_at if rows else None,
        ).model_dump(mode="json")
    )


@versions.get(
    "/pipelines/{pipeline_id}/versions/active", response_model=Envelope[VersionDetail], responses=NOT_FOUND
)
def active_version(pipeline_id: PipelineId, _: CanView, session: SessionDep) -> object:
    pipeline = service.get_pipeline(session, pipeline_id)
    version = service.get_version(session, pipeline.active_version_id)
    assert version is not None
    return ok(version_public(version, pipeline, with_document=True))


@versions.post(
    "/pipelines/{pipeline_id}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[VersionDetail],
    responses=NOT_FOUND,
)
def create_version(
    pipeline_id: PipelineId, body: VersionCreate, principal: CanEdit, session: SessionDep, ip: ClientIP
) -> object:
    """A new version on purpose (named snapshot of the active document, with any changes given); it
    becomes the active version."""
    version = service.create_version(session, principal.user, pipeline_id, body, ip)
    pipeline = service.get_pipeline(session, pipeline_id)
    return ok(version_public(version, pipeline, with_document=True), f"Version {version.number} created")


@versions.post("/versions/{version_id}/activate", response_model=Envelope[VersionDetail], responses=NOT_FOUND)
def activate_version(version_id: VersionId, principal: CanEdit, session: SessionDep, ip: ClientIP) -> object:
    """The version deploy (and so run) uses from now on; deploy to put it into Dagster."""
    version, pipeline = service.activate_version(session, principal.user, version_id, ip)
    return ok(
        version_public(version, pipeline, with_document=True),
        f"Version {version.number} is active; deploy to run it",
    )


@versions.post("/versions/{version_id}/restore", response_model=Envelope[VersionDetail], responses=NOT_FOUND)
def restore_version(version_id: VersionId, principal: CanEdit, session: SessionDep, ip: ClientIP) -> object:
    """The old document becomes the newest version (and the active one)."""
    version = service.restore_version(session, principal.user, version_id, ip)
    pipeline = service.get_pipeline(session, version.pipeline_id)
    return ok(version_public(version, pipeline, with_document=True), f"Restored as version {version.number}")


@versions.get("/versions/{v1}/compare/{v2}", response_model=Envelope[VersionComparison], responses=NOT_FOUND)
def compare_versions(v1: VersionId, v2: VersionId, _: CanView, session: SessionDep) -> object:
    """A structural diff: each added, removed or changed path with its old and new value."""
    first, second, changes = service.compare_versions(session, v1, v2)
    pipeline = service.get_pipeline(session, first.pipeline_id)
    counts = {
        kind: sum(1 for c in changes if c["change"] == kind) for kind in ("added", "removed", "changed")
    }
    return ok(
        VersionComparison(
            pipeline_id=pipeline.id,
            version_1=version_public(first, pipeline),  # type: ignore[arg-type]
            version_2=version_public(second, pipeline),  # type: ignore[arg-type]
            identical=not changes,
            changes=changes,  # type: ignore[arg-type]
            summary=counts,
        ).model_dump(mode="json")
    )
