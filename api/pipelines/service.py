"""Pipelines: documents and immutable versions, deploy into the `aetl_pipelines` location, runs.

No HTTP here. Runs are never stored in the metadata DB: Dagster's run storage answers every run
question through the GraphQL client.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.connectors.models import Connector
from api.core.config import get_settings
from api.core.errors import Conflict, NotFound, ValidationFailed
from api.core.permissions import role_can
from api.dagster_client import (
    DagsterClient,
    DagsterClientError,
    DagsterUnavailable,
    Run,
    RunStatus,
    Schedule,
)
from api.db.models import User
from api.db.session import new_session
from api.pipelines.models import Pipeline, PipelineVersion
from api.pipelines.run_cache import RunCache
from api.pipelines.schemas import (
    PipelineCreate,
    PipelineUpdate,
    TriggerCreate,
    VersionCreate,
    _DocumentFields,
)
from orchestration.connectors.config import normalize_type
from orchestration.specs.pipeline import (
    CREDENTIAL_KEYS,
    DocumentError,
    PipelineDocument,
    Trigger,
    document_diff,
)
from orchestration.specs.pipeline_plan import (
    LOCATION,
    REPOSITORY,
    TAG_PIPELINE,
    TAG_TRIGGER,
    TAG_TRIGGERED_BY,
    TAG_VERSION,
    TAG_VERSION_ID,
    job_name,
    run_config,
)

logger = logging.getLogger("api.pipelines")

# API run statuses (ai-etl spec words) <- Dagster's
RUN_STATUS_NAMES: dict[RunStatus, str] = {
    RunStatus.QUEUED: "queued",
    RunStatus.NOT_STARTED: "queued",
    RunStatus.MANAGED: "queued",
    RunStatus.STARTING: "running",
    RunStatus.STARTED: "running",
    RunStatus.SUSPENDED: "running",
    RunStatus.SUCCESS: "success",
    RunStatus.FAILURE: "failed",
    RunStatus.CANCELING: "cancelling",
    RunStatus.CANCELED: "cancelled",
}
DAGSTER_STATUSES: dict[str, list[RunStatus]] = {}
for _dagster, _name in RUN_STATUS_NAMES.items():
    DAGSTER_STATUSES.setdefault(_name, []).append(_dagster)
DAGSTER_STATUSES["pending"] = DAGSTER_STATUSES["queued"]
DAGSTER_STATUSES["canceled"] = DAGSTER_STATUSES["cancelled"]

AGGREGATOR_PARTS = {
    "sources": "source_config",
    "transformations": "transformation_config",
    "targets": "destination_config",
}


@lru_cache(maxsize=1)
def dagster() -> DagsterClient:
    """The API process's one Dagster client (thread-safe); pipeline jobs live in their own location."""
    return DagsterClient(get_settings().dagster_url, timeout=30, location=LOCATION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def release_connection(session: Session) -> None:
    """End the read transaction before a Dagster call: a request waiting on GraphQL must not hold one of
    the pool's PostgreSQL connections (50 such requests exhausted the pool of 20 in the load benchmark)."""
    session.commit()


# -- the document ---------------------------------------------------------------------------------


def _as_list(value: Any, key: str) -> list[Any]:
    """An aggregator `*_config`: one object, a list, or `{key: [...]}`; empty means none."""
    if value is None or value == {}:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get(key), list) and len(value) == 1:
        return list(value[key])
    return [value]


def document_data(
    body: _DocumentFields, base: dict[str, Any] | None, name: str | None
) -> tuple[dict[str, Any], set[str]]:
    """Both specs' fields over `base` (the edited document); returns it and the aggregator-shaped parts."""
    data = dict(base or {})
    given = body.model_fields_set
    aggregator = {part for part, field in AGGREGATOR_PARTS.items() if field in given}
    direct = {part for part in AGGREGATOR_PARTS if part in given}
    if aggregator & direct or (aggregator and direct):
        field = AGGREGATOR_PARTS[sorted(aggregator)[0]]
        raise ValidationFailed(
            "Give sources/transformations/targets or source_config/transformation_config/"
            "destination_config, not both",
            field=field,
        )
    for part in direct:
        data[part] = list(getattr(body, part) or [])
    for part in aggregator:
        data[part] = _as_list(getattr(body, AGGREGATOR_PARTS[part]), part)
    for key in ("description", "schedule", "schedule_timezone", "triggers", "parameters", "tags"):
        if key in given:
            value = getattr(body, key)
            if value is None or value == "":
                data.pop(key, None)
            else:
                data[key] = value
    if name is not None:
        data["name"] = name
    return data, aggregator


def _request_field(field: str, aggregator: set[str]) -> str:
    """`sources.0.table` -> `source_config.table` when the caller wrote the aggregator shape."""
    head, _, rest = field.partition(".")
    if head in aggregator:
        index, _, tail = rest.partition(".")
        prefix = AGGREGATOR_PARTS[head]
        if head == "transformations" or index not in ("0", ""):
            return f"{prefix}.{rest}" if rest else prefix
        return f"{prefix}.{tail}" if tail else prefix
    return field


def parse_document(data: dict[str, Any], aggregator: set[str] | None = None) -> PipelineDocument:
    aggregator = aggregator or set()
    for part in AGGREGATOR_PARTS:
        if part != "transformations" and not data.get(part):
            field = AGGREGATOR_PARTS[part] if part in aggregator else part
            raise ValidationFailed(f"Invalid value for '{field}': at least one is required", field=field)
    try:
        return PipelineDocument.parse(data)
    except DocumentError as error:
        field = _request_field(error.field, aggregator)
        message = f"Invalid value for '{field}': {error.message}"
        raise ValidationFailed(
            message, field=field, details={"errors": [{"field": field, "reason": error.message}]}
        ) from None


def validated_document(
    session: Session, user: User, data: dict[str, Any], aggregator: set[str]
) -> PipelineDocument:
    """Parse and check connectors; errors name the field the way the caller wrote the body."""
    document = parse_document(data, aggregator)
    try:
        check_connectors(session, user, document)
    except ValidationFailed as error:
        field = _request_field(error.field or "", aggregator)
        if field != error.field:
            error.message = error.message.replace(f"'{error.field}'", f"'{field}'")
            error.field = field
        raise
    return document


def check_connectors(session: Session, user: User, document: PipelineDocument) -> None:
    """Every connector_id must name a live connector that the caller may use, of a fitting type.

    Connectors are shared by everyone whose role may view them (as `GET /connectors` lists them);
    a target connector must be a ClickHouse, a source's declared type must match its connector.
    """
    wanted: list[tuple[str, str, str | None]] = [
        (f"sources.{i}.connector_id", s.connector_id, s.type.value if s.type else None)
        for i, s in enumerate(document.sources)
        if s.connector_id
    ] + [
        (f"targets.{i}.connector_id", t.connector_id, "clickhouse")
        for i, t in enumerate(document.targets)
        if t.connector_id
    ]
    if not wanted:
        return
    if not role_can(user.role, "connectors", "view"):
        field, connector_id, _ = wanted[0]
        raise ValidationFailed(
            f"Invalid value for '{field}': your role may not use connectors",
            field=field,
            details={"connector_id": connector_id},
        )
    rows = session.execute(
        select(Connector.id, Connector.type).where(
            Connector.id.in_([c for _, c, _ in wanted]), Connector.deleted_at.is_(None)
        )
    ).all()
    types = {row.id: row.type for row in rows}
    for field, connector_id, expected in wanted:
        if connector_id not in types:
            raise ValidationFailed(
                f"Invalid value for '{field}': connector {connector_id!r} does not exist",
                field=field,
                details={"connector_id": connector_id},
            )
        if expected is not None and normalize_type(types[connector_id]) != expected:
            raise ValidationFailed(
                f"Invalid value for '{field}': connector {connector_id!r} is a {types[connector_id]}, "
                f"not a {expected}",
                field=field,
                details={"connector_id": connector_id},
            )


# -- pipelines ------------------------------------------------------------------------------------


def get_pipeline(session: Session, pipeline_id: str, *, for_update: bool = False) -> Pipeline:
    query = select(Pipeline).where(Pipeline.id == pipeline_id, Pipeline.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    pipeline = session.scalar(query)
    if pipeline is None:
        raise NotFound("Pipeline not found", details={"pipeline_id": pipeline_id})
    return pipeline


def get_version(session: Session, version_id: str | None) -> PipelineVersion | None:
    return session.get(PipelineVersion, version_id) if version_id else None


def _add_version(
    session: Session,
    pipeline: Pipeline,
    document: PipelineDocument,
    user: User,
    *,
    version_name: str | None = None,
    change_description: str | None = None,
) -> PipelineVersion:
    number = (
        session.scalar(
            select(func.max(PipelineVersion.number)).where(PipelineVersion.pipeline_id == pipeline.id)
        )
        or 0
    ) + 1
    version = PipelineVersion(
        pipeline_id=pipeline.id,
        number=number,
        document=document.model_dump(mode="json"),
        content_hash=document.content_hash(),
        version_name=version_name,
        change_description=change_description,
        created_by=user.id,
        created_at=utcnow(),
    )
    session.add(version)
    session.flush()
    pipeline.active_version_id = version.id
    pipeline.name = document.name
    pipeline.description = document.description
    pipeline.updated_at = utcnow()
    return version


def create_pipeline(
    session: Session, user: User, body: PipelineCreate, ip: str | None
) -> tuple[Pipeline, PipelineVersion]:
    data, aggregator = document_data(body, None, body.name)
    document = validated_document(session, user, data, aggregator)
    pipeline = Pipeline(
        project_id=body.project_id,
        name=document.name,
        description=document.description,
        owner_id=user.id,
        status="draft",
        deploy_status="none",
    )
    session.add(pipeline)
    session.flush()
    version = _add_version(
        session, pipeline, document, user, version_name=body.version_name, change_description="Created"
    )
    log_activity(session, user.id, "pipeline.create", "pipeline", pipeline.id, ip=ip)
    session.commit()
    return pipeline, version


def list_pipelines(
    session: Session,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    project_id: str | None = None,
    is_active: bool | None = None,
) -> tuple[list[tuple[Pipeline, PipelineVersion | None]], int]:
    conditions: list[ColumnElement[bool]] = [Pipeline.deleted_at.is_(None)]
    if status:
        conditions.append(Pipeline.status == status)
    if project_id:
        conditions.append(Pipeline.project_id == project_id)
    if is_active is not None:
        conditions.append((Pipeline.status == "active") if is_active else (Pipeline.status != "active"))
    # the page and the total in one round trip (count(*) over the whole filtered set)
    rows = session.execute(
        select(Pipeline, PipelineVersion, func.count().over().label("total"))
        .outerjoin(PipelineVersion, PipelineVersion.id == Pipeline.active_version_id)
        .where(*conditions)
        .order_by(Pipeline.created_at.desc(), Pipeline.id)
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        total = int(rows[0][2])
    else:  # a page past the end has no row to carry the total
        total = session.scalar(select(func.count()).select_from(Pipeline).where(*conditions)) or 0
    return [(p, v) for p, v, _ in rows], int(total)


def update_pipeline(
    session: Session, user: User, pipeline_id: str, body: PipelineUpdate, ip: str | None
) -> tuple[Pipeline, PipelineVersion, bool, bool]:
    """Returns (pipeline, active version, whether a version was made, whether Dagster must reload)."""
    pipeline = get_pipeline(session, pipeline_id, for_update=True)
    active = get_version(session, pipeline.active_version_id)
    assert active is not None
    data, aggregator = document_data(body, active.document, body.name)
    document = validated_document(session, user, data, aggregator)
    created = document.content_hash() != active.content_hash
    version = active
    if created:
        version = _add_version(
            session,
            pipeline,
            document,
            user,
            version_name=body.version_name,
            change_description=body.change_description or "Updated",
        )
    reload = False
    if "project_id" in body.model_fields_set:
        pipeline.project_id = body.project_id
    wanted = body.status or (None if body.is_active is None else ("active" if body.is_active else "paused"))
    if wanted and wanted != pipeline.status:
        if pipeline.status in ("draft", "failed") and wanted == "active":
            raise Conflict(
                "A pipeline becomes active when it is deployed: POST /pipelines/{id}/deploy",
                field="status",
                details={"pipeline_id": pipeline.id, "status": pipeline.status},
            )
        pipeline.status = wanted
        pipeline.updated_at = utcnow()
        # schedules of a deployed pipeline follow its status at the next load of the location
        reload = pipeline.deployed_version_id is not None
    log_activity(
        session, user.id, "pipeline.update", "pipeline", pipeline.id, ip=ip, details={"new_version": created}
    )
    session.commit()
    return pipeline, version, created, reload


def delete_pipeline(session: Session, user: User, pipeline_id: str, ip: str | None) -> bool:
    """Soft delete; returns whether it was deployed (the location must reload to drop it)."""
    from api.pipelines import deletion  # its rules are the admin registry's

    pipeline = get_pipeline(session, pipeline_id, for_update=True)
    was_deployed = deletion.soft_delete(session, pipeline, user.id, utcnow())
    log_activity(session, user.id, "pipeline.delete", "pipeline", pipeline.id, ip=ip)
    session.commit()
    return was_deployed


# -- versions -------------------------------------------------------------------------------------


def list_versions(session: Session, pipeline: Pipeline) -> list[PipelineVersion]:
    return list(
        session.scalars(
            select(PipelineVersion)
            .where(PipelineVersion.pipeline_id == pipeline.id)
            .order_by(PipelineVersion.number.desc())
        )
    )


def version_with_pipeline(session: Session, version_id: str) -> tuple[PipelineVersion, Pipeline]:
    version = session.get(PipelineVersion, version_id)
    if version is None:
        raise NotFound("Pipeline version not found", details={"version_id": version_id})
    try:
        pipeline = get_pipeline(session, version.pipeline_id)
    except NotFound:
        raise NotFound("Pipeline version not found", details={"version_id": version_id}) from None
    return version, pipeline


def create_version(
    session: Session, user: User, pipeline_id: str, body: VersionCreate, ip: str | None
) -> PipelineVersion:
    """A new version on purpose: the active document with the given changes (none: a named snapshot)."""
    pipeline = get_pipeline(session, pipeline_id, for_update=True)
    active = get_version(session, pipeline.active_version_id)
    assert active is not None
    data, aggregator = document_data(body, active.document, body.name)
    document = validated_document(session, user, data, aggregator)
    version = _add_version(
        session,
        pipeline,
        document,
        user,
        version_name=body.version_name,
        change_description=body.change_description,
    )
    log_activity(session, user.id, "pipeline.version.create", "pipeline", pipeline.id, ip=ip)
    session.commit()
    return version


def activate_version(
    session: Session, user: User, version_id: str, ip: str | None
) -> tuple[PipelineVersion, Pipeline]:
    version, pipeline = version_with_pipeline(session, version_id)
    pipeline.active_version_id = version.id
    pipeline.name = str(version.document.get("name") or pipeline.name)
    pipeline.description = version.document.get("description")
    pipeline.updated_at = utcnow()
    log_activity(
        session, user.id, "pipeline.version.activate", "pipeline", pipeline.id, ip=ip,
        details={"version": version.number},
    )  # fmt: skip
    session.commit()
    return version, pipeline


def restore_version(session: Session, user: User, version_id: str, ip: str | None) -> PipelineVersion:
    """The old document becomes the newest version (and the active one); history is never rewritten."""
    old, pipeline = version_with_pipeline(session, version_id)
    session.refresh(pipeline, with_for_update=True)
    document = parse_document(dict(old.document))
    version = _add_version(
        session,
        pipeline,
        document,
        user,
        version_name=old.version_name,
        change_description=f"Restored from version {old.number}",
    )
    log_activity(
        session, user.id, "pipeline.version.restore", "pipeline", pipeline.id, ip=ip,
        details={"from_version": old.number, "version": version.number},
    )  # fmt: skip
    session.commit()
    return version


def compare_versions(
    session: Session, first_id: str, second_id: str
) -> tuple[PipelineVersion, PipelineVersion, list[dict[str, Any]]]:
    first, pipeline = version_with_pipeline(session, first_id)
    second, _ = version_with_pipeline(session, second_id)
    if second.pipeline_id != pipeline.id:
        raise ValidationFailed(
            "Both versions must belong to the same pipeline",
            field="v2",
            details={"v1_pipeline_id": first.pipeline_id, "v2_pipeline_id": second.pipeline_id},
        )
    return first, second, document_diff(first.document, second.document)


# -- deploy ---------------------------------------------------------------------------------------

_reload_lock = threading.Lock()


def start_deploy(session: Session, user: User, pipeline_id: str, ip: str | None) -> Pipeline:
    """Marks the active version deployed (state `deploying`); `finish_deploy` reloads Dagster."""
    pipeline = get_pipeline(session, pipeline_id, for_update=True)
    pipeline.deployed_version_id = pipeline.active_version_id
    pipeline.deploy_status = "deploying"
    pipeline.deploy_error = None
    pipeline.updated_at = utcnow()
    version = get_version(session, pipeline.active_version_id)
    log_activity(
        session, user.id, "pipeline.deploy", "pipeline", pipeline.id, ip=ip,
        details={"version": version.number if version else None},
    )  # fmt: skip
    session.commit()
    return pipeline


@lru_cache(maxsize=1)
def dagster_for_reloads() -> DagsterClient:
    # a reload re-imports the location in a new process: tens of seconds on a busy machine
    return DagsterClient(get_settings().dagster_url, timeout=RELOAD_TIMEOUT_SECONDS, location=LOCATION)


RELOAD_TIMEOUT_SECONDS = 300.0


def reload_pipelines_location() -> str | None:
    """Reload the location; returns why it failed to load, if it did (one reload at a time)."""
    with _reload_lock:
        try:
            dagster_for_reloads().reload_location(LOCATION)
        except DagsterUnavailable as error:
            # no answer in time is not a failed load: wait for the location to settle and look
            logger.warning("reload of %s: %s; waiting for the location", LOCATION, error.message)
            return _wait_for_location()
        except DagsterClientError as error:
            logger.warning("reload of %s failed: %s", LOCATION, error.internal_message[:2000])
            return f"Dagster could not load the pipelines code location: {error.message}"
    return None


def _wait_for_location() -> str | None:
    deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            location = next((c for c in dagster().code_locations() if c.name == LOCATION), None)
        except DagsterClientError:
            location = None
        if location is not None and location.load_status == "LOADED":
            if location.load_failed:
                return "Dagster could not load the pipelines code location"
            return None
        time.sleep(1)
    return "Dagster did not finish loading the pipelines code location in time"


def finish_deploy(pipeline_id: str, version_id: str | None) -> None:
    """Background part of a deploy: reload, then see whether the pipeline's job is in the location."""
    _record_deploys({pipeline_id: version_id})


def finish_deploys(pipeline_ids: Sequence[str]) -> None:
    """Redeploy of restored pipelines: one reload for all, each with the version it had deployed."""
    session = new_session()
    try:
        rows = session.execute(
            select(Pipeline.id, Pipeline.deployed_version_id).where(Pipeline.id.in_(list(pipeline_ids)))
        ).all()
        versions = {pipeline_id: version_id for pipeline_id, version_id in rows}
    finally:
        session.close()
    _record_deploys(versions)


def _record_deploys(versions: dict[str, str | None]) -> None:
    location_error = reload_pipelines_location()
    jobs: set[str] = set()
    if location_error is None:
        try:
            contents = dagster().repository_contents(LOCATION, REPOSITORY)
        except DagsterClientError as error:
            location_error = f"Dagster did not answer after the reload: {error.message}"
        else:
            jobs = set(contents.jobs)
            _schedules_follow_the_api(contents.schedules, versions)
    session = new_session()
    try:
        for pipeline_id, version_id in versions.items():
            _record_deploy(session, pipeline_id, version_id, location_error, jobs)
        session.commit()
    finally:
        session.close()


def _record_deploy(
    session: Session, pipeline_id: str, version_id: str | None, location_error: str | None, jobs: set[str]
) -> None:
    pipeline = session.scalar(select(Pipeline).where(Pipeline.id == pipeline_id).with_for_update())
    if pipeline is None or pipeline.deployed_version_id != version_id or pipeline.deleted_at is not None:
        return  # a newer deploy or a delete took over
    if location_error is not None:
        pipeline.deploy_status, pipeline.deploy_error = "failed", location_error
    elif job_name(pipeline_id) in jobs:
        pipeline.deploy_status, pipeline.deploy_error = "deployed", None
        pipeline.deployed_at = utcnow()
        if pipeline.status in ("draft", "failed"):
            pipeline.status = "active"
    elif pipeline.deploy_status != "failed":
        # the code location records why it left a document out; without a record, say what we saw
        pipeline.deploy_status = "failed"
        pipeline.deploy_error = "the pipeline's job is not in the code location after the reload"
    if pipeline.deploy_status == "failed":
        pipeline.status = "failed"


def undeploy_in_background() -> None:
    reload_pipelines_location()


def reload_in_background(pipeline_id: str) -> None:
    """After a change of a deployed pipeline's status: reload, then its schedules follow the API."""
    if reload_pipelines_location() is not None:
        return
    try:
        schedules = dagster().repository_contents(LOCATION, REPOSITORY).schedules
    except DagsterClientError as error:
        logger.warning("schedules of pipeline %s not checked: %s", pipeline_id, error.message)
        return
    _schedules_follow_the_api(schedules, [pipeline_id])


def _schedules_follow_the_api(schedules: Sequence[Schedule], pipeline_ids: Iterable[str]) -> None:
    """A pipeline's schedule runs or stops as the API says (its default status, set from the document
    and the pipeline's status), but a start or stop made in Dagster's UI is stored and outranks the
    default: those of these pipelines are reset, so the API's word is the last one."""
    jobs = {job_name(pipeline_id) for pipeline_id in pipeline_ids}
    for schedule in schedules:
        if schedule.job_name not in jobs or schedule.status == schedule.default_status:
            continue
        try:
            dagster().reset_schedule(schedule.name)
        except DagsterClientError as error:
            logger.warning("schedule %s not reset to the API's state: %s", schedule.name, error.message)


ACTIVE_RUN_STATUSES = (
    RunStatus.QUEUED, RunStatus.NOT_STARTED, RunStatus.STARTING, RunStatus.STARTED, RunStatus.MANAGED,
)  # fmt: skip


def stop_runs(pipeline_id: str) -> list[str]:
    """Terminates the pipeline's queued and running runs (Dagster's terminate); returns their ids."""
    client = dagster()
    stopped: list[str] = []
    try:
        tags = {TAG_PIPELINE: pipeline_id}
        runs = client.list_runs(tags=tags, statuses=ACTIVE_RUN_STATUSES, limit=100).items
    except DagsterClientError as error:
        logger.warning("runs of deleted pipeline %s not stopped: %s", pipeline_id, error.message)
        return stopped
    for run in runs:
        try:
            client.terminate_run(run.run_id)
            stopped.append(run.run_id)
        except DagsterClientError as error:
            logger.warning("run %s of pipeline %s not stopped: %s", run.run_id, pipeline_id, error.message)
    if stopped:
        logger.info("stopped %d run(s) of deleted pipeline %s", len(stopped), pipeline_id)
        runs_changed(pipeline_id)
    return stopped


# -- runs -----------------------------------------------------------------------------------------


def _deployed(session: Session, pipeline: Pipeline) -> PipelineVersion:
    if pipeline.deploy_status == "deploying":
        raise Conflict(
            "The pipeline is being deployed; run it when GET /pipelines/{id}/status says deployed",
            details={"pipeline_id": pipeline.id, "deploy_status": pipeline.deploy_status},
        )
    version = get_version(session, pipeline.deployed_version_id)
    if version is None or pipeline.deploy_status != "deployed":
        raise Conflict(
            "The pipeline is not deployed: POST /api/v1/pipelines/{id}/deploy first",
            details={
                "pipeline_id": pipeline.id,
                "deploy_status": pipeline.deploy_status,
                "deploy_error": pipeline.deploy_error,
            },
        )
    return version


def launch_run(
    session: Session, user: User, pipeline_id: str, parameters: dict[str, Any], via: str, ip: str | None
) -> tuple[Run, PipelineVersion]:
    pipeline = get_pipeline(session, pipeline_id)
    version = _deployed(session, pipeline)
    for key in parameters:
        if key.lower() in CREDENTIAL_KEYS or len(key) > 63 or not key.isidentifier():
            raise ValidationFailed(
                f"Invalid value for 'parameters.{key}': not a parameter name "
                "(credentials live in connectors)",
                field=f"parameters.{key}",
            )
    document = PipelineDocument.parse(version.document)
    tags = {
        TAG_PIPELINE: pipeline.id,
        TAG_VERSION: str(version.number),
        TAG_VERSION_ID: version.id,
        TAG_TRIGGERED_BY: user.id,
        TAG_TRIGGER: via,
    }
    client = dagster()
    run_id = client.launch_run(
        job_name(pipeline.id),
        run_config=run_config(pipeline.id, document, parameters),
        tags=tags,
        repository_location=LOCATION,
        repository_name=REPOSITORY,
    )
    log_activity(
        session, user.id, "pipeline.run", "pipeline", pipeline.id, ip=ip,
        details={"run_id": run_id, "version": version.number, "via": via},
    )  # fmt: skip
    session.commit()
    runs_changed(pipeline.id)
    return client.get_run(run_id), version


def dagster_statuses(status: str | None) -> list[RunStatus] | None:
    if not status:
        return None
    if status.upper() in RunStatus.__members__:
        return [RunStatus(status.upper())]
    found = DAGSTER_STATUSES.get(status.lower())
    if found is None:
        raise ValidationFailed(
            f"Invalid value for 'status': {status!r} (one of {', '.join(sorted(DAGSTER_STATUSES))})",
            field="status",
        )
    return found


@lru_cache(maxsize=1)
def run_cache() -> RunCache:
    """The API process's shared, short-lived cache of Dagster's run answers (api/pipelines/run_cache.py)."""
    return RunCache(get_settings().run_cache_seconds)


def runs_changed(pipeline_id: str) -> None:
    """The API changed this pipeline's runs or definitions: its next reads ask Dagster again."""
    run_cache().invalidate(pipeline_id)
    run_cache().invalidate("*")  # the all-pipelines live feed


def list_runs(pipeline_id: str, *, limit: int, offset: int, status: str | None) -> tuple[list[Run], int]:
    statuses = dagster_statuses(status)

    def load() -> tuple[list[Run], int]:
        page = dagster().list_runs_with_metadata(
            tags={TAG_PIPELINE: pipeline_id}, statuses=statuses, limit=limit, offset=offset
        )
        return page.items, int(page.total or 0)

    key = ("runs", pipeline_id, limit, offset, tuple(s.value for s in statuses or ()))
    items, total = run_cache().get(
        key, load, tags=(pipeline_id,), settled=lambda value: runs_settled(value[0])
    )
    return list(items), total


def latest_runs(pipeline_ids: Sequence[str]) -> dict[str, Run | None]:
    ids = tuple(dict.fromkeys(pipeline_ids))
    found = run_cache().get(
        ("latest", ids),
        lambda: dagster().latest_runs(TAG_PIPELINE, ids),
        tags=ids,
        settled=lambda value: runs_settled(dict(value).values()),
    )
    return dict(found)


def recent_runs(pipeline_id: str | None, limit: int) -> list[Run]:
    """The newest runs of one pipeline (or of all), for the live WebSocket feeds."""
    tags = {TAG_PIPELINE: pipeline_id} if pipeline_id else None
    key = ("recent", pipeline_id, limit)
    found = run_cache().get(key, lambda: dagster().list_runs(tags=tags, limit=limit).items,
                            tags=(pipeline_id or "*",), settled=runs_settled)  # fmt: skip
    return list(found)


def runs_settled(runs: Iterable[Run | None]) -> bool:
    """Whether every run of an answer has finished (nothing in it changes until a new run starts)."""
    return all(run is None or run.status.finished for run in runs)


def run_figures(run: Run) -> tuple[int | None, dict[str, float | None]]:
    """Rows and phase timings summed over the run's materializations (what the run itself recorded)."""
    entries = run.materialization_metadata
    if not entries:
        return None, {"extraction_time_ms": None, "transformation_time_ms": None, "loading_time_ms": None}
    rows = sum(int(m.get("rows_written", m.get("dagster/row_count", 0)) or 0) for m in entries)
    timings: dict[str, float | None] = {
        key: float(sum(float(m.get(key) or 0) for m in entries))
        for key in ("extraction_time_ms", "transformation_time_ms", "loading_time_ms")
    }
    return rows, timings


def run_parameters(run: Run) -> dict[str, Any]:
    ops = (run.run_config or {}).get("ops") or {}
    for op in ops.values():
        return dict(((op or {}).get("config") or {}).get("parameters") or {})
    return {}


def pipeline_status(session: Session, pipeline_id: str) -> tuple[Pipeline, Run | None, list[dict[str, Any]]]:
    pipeline = get_pipeline(session, pipeline_id)
    release_connection(session)
    latest = latest_runs([pipeline.id]).get(pipeline.id)
    schedules: list[dict[str, Any]] = []
    if pipeline.deploy_status == "deployed":
        contents = dagster().repository_contents(LOCATION, REPOSITORY)
        prefix = f"{job_name(pipeline.id)}__"
        schedules = [
            {
                "name": s.name,
                "trigger_id": s.name.removeprefix(prefix),
                "cron": s.cron_schedule,
                "timezone": s.execution_timezone,
                "status": s.status.value,
            }
            for s in contents.schedules
            if s.job_name == job_name(pipeline.id)
        ]
    return pipeline, latest, schedules


# -- triggers -------------------------------------------------------------------------------------


def create_trigger(
    session: Session, user: User, body: TriggerCreate, ip: str | None
) -> tuple[Pipeline, PipelineVersion, Trigger, bool]:
    """A trigger is part of the document: a new version with it; a deployed pipeline is redeployed."""
    pipeline = get_pipeline(session, body.pipeline_id, for_update=True)
    active = get_version(session, pipeline.active_version_id)
    assert active is not None
    raw = {
        "id": f"trigger_{secrets.token_hex(4)}",
        "name": body.name,
        "trigger_type": body.trigger_type,
        "config": body.config,
        "enabled": body.enabled,
    }
    data = dict(active.document)
    data["triggers"] = [*(data.get("triggers") or []), raw]
    try:
        document = PipelineDocument.parse(data)
    except DocumentError as error:
        raise ValidationFailed(
            f"Invalid value for '{_trigger_field(error.field)}': {error.message}",
            field=_trigger_field(error.field),
        ) from None
    trigger = document.triggers[-1]
    version = _add_version(
        session, pipeline, document, user, change_description=f"Trigger {trigger.name or trigger.id} added"
    )
    redeploy = pipeline.deployed_version_id is not None and pipeline.deploy_status in (
        "deployed",
        "deploying",
    )
    if redeploy:
        pipeline.deployed_version_id = version.id
        pipeline.deploy_status = "deploying"
        pipeline.deploy_error = None
    log_activity(
        session, user.id, "pipeline.trigger.create", "pipeline", pipeline.id, ip=ip,
        details={"trigger_id": trigger.id, "version": version.number},
    )  # fmt: skip
    session.commit()
    return pipeline, version, trigger, redeploy


def _trigger_field(field: str) -> str:
    """`triggers.3.cron` (the new trigger inside the document) -> the request's `config.cron_expression`."""
    parts = field.split(".")
    if parts[0] != "triggers" or len(parts) < 3:
        return "config"
    return {"cron": "config.cron_expression", "timezone": "config.timezone", "type": "trigger_type"}.get(
        parts[2], parts[2]
    )


def next_fire_time(trigger: Trigger) -> datetime | None:
    if trigger.type != "cron" or not trigger.cron or not trigger.enabled:
        return None
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo(trigger.timezone))
    return croniter(trigger.cron, now).get_next(datetime).astimezone(UTC)  # type: ignore[no-any-return]
