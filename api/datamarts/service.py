"""Datamarts: a checked SELECT becomes a dbt model in the `aetl_datamarts` code location, built by Dagster.

No HTTP here. The metadata DB records each datamart and every model version; the model files are
written under the generated model path (orchestration.dbt `datamart_models_dir`), the manifest is
re-parsed and the location reloaded, so the datamart is a Dagster asset downstream of the pipeline
assets it reads. Builds and refreshes are Dagster runs of the datamart's own job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import uuid
from decimal import Decimal
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from croniter import croniter  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.auth.service import Principal
from api.core.config import get_settings
from api.core.errors import (
    Conflict,
    Gone,
    NotFound,
    PermissionDenied,
    PipelineExecutionError,
    ValidationFailed,
)
from api.dagster_client import DagsterClient, DagsterClientError, DagsterUnavailable, Run, RunStatus
from api.datamarts.export import WorkbookFacts, check_signature, expired, new_file_id, sign, write_workbook
from api.datamarts.models import Datamart, DatamartVersion
from api.datamarts.schemas import DatamartCreate
from api.pipelines.models import Pipeline, PipelineVersion
from orchestration.dbt import DbtManifestMissing, datamart_models_dir, prepare_dbt_manifest
from orchestration.specs.datamart import (
    INTERNAL_DATABASES,
    LOCATION,
    MODEL_SUBDIR,
    TAG_CONCURRENT,
    TAG_DATAMART,
    TAG_TRIGGERED_BY,
    QueryRejected,
    TableRef,
    analyze_query,
    job_name,
    key_columns,
    model_sql,
    render_model,
    render_properties,
    schedule_name,
    source_call,
)
from orchestration.specs.pipeline import DocumentError, PipelineDocument
from orchestration.specs.pipeline_plan import REPOSITORY, target_asset_key
from orchestration.warehouse.client import get_client

logger = logging.getLogger("api.datamarts")

BUILD_TIMEOUT_SECONDS = 600.0
RELOAD_TIMEOUT_SECONDS = 300.0
MAX_PREVIEW_ROWS = 1000
EXPORT_LINK_SECONDS = 24 * 3600
# model files, manifest and location change together: one create/schedule change at a time
_project_lock = threading.Lock()


def datamart_database() -> str:
    """The warehouse database dbt builds models into (profiles.yml `schema`)."""
    return os.environ.get("DBT_SCHEMA") or "analytics"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@lru_cache(maxsize=1)
def dagster() -> DagsterClient:
    return DagsterClient(get_settings().dagster_url, timeout=30, location=LOCATION)


@lru_cache(maxsize=1)
def dagster_for_reloads() -> DagsterClient:
    # a reload re-imports dagster-dbt and the manifest in a new process: tens of seconds when busy
    return DagsterClient(get_settings().dagster_url, timeout=RELOAD_TIMEOUT_SECONDS, location=LOCATION)


def warehouse() -> Client:
    return get_client(get_settings().clickhouse_url, autogenerate_session_id=False, send_receive_timeout=300)


def quoted(database: str, table: str) -> str:
    return f"`{database.replace('`', '``')}`.`{table.replace('`', '``')}`"


def next_fire(cron: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    if not cron:
        return None
    value = croniter(cron, now or utcnow()).get_next(dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def check_cron(cron: str, field: str) -> str:
    cron = " ".join(cron.split())
    if len(cron.split(" ")) != 5 or not croniter.is_valid(cron):
        raise ValidationFailed(
            f"Invalid value for '{field}': not a 5-field cron expression",
            field=field,
            details={"value": cron},
        )
    return cron


# -- what a user may read -------------------------------------------------------------------------


def readable_tables(session: Session, principal: Principal) -> dict[tuple[str, str], tuple[str, Any]]:
    """(database, table) -> ("source", upstream asset key) | ("ref", datamart name).

    Pipeline targets in the platform's warehouse (if the caller may view pipelines) and other
    datamarts (if the caller may view datamarts); nothing else of the warehouse.
    """
    readable: dict[tuple[str, str], tuple[str, Any]] = {}
    if principal.can("pipelines", "view"):
        rows = session.execute(
            select(Pipeline.id, PipelineVersion.document)
            .join(PipelineVersion, PipelineVersion.id == Pipeline.deployed_version_id)
            .where(Pipeline.deleted_at.is_(None))
        ).all()
        for pipeline_id, document in rows:
            try:
                parsed = PipelineDocument.parse(document)
            except DocumentError:
                continue
            for target in parsed.targets:
                if target.connector_id is None:
                    readable[(target.database or "default", target.table)] = (
                        "source",
                        target_asset_key(pipeline_id, target),
                    )
    if principal.can("datamarts", "view"):
        names = session.scalars(
            select(Datamart.name).where(Datamart.deleted_at.is_(None), Datamart.status == "active")
        )
        for name in names:
            readable[(datamart_database(), name)] = ("ref", name)
    return readable


def _rejected(reason: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid value for 'source_query': {reason}", field="source_query")


def resolve_inputs(
    name: str, sql: str, readable: dict[tuple[str, str], tuple[str, Any]]
) -> tuple[str, str, list[tuple[TableRef, str, tuple[str, ...]]]]:
    """The model's SQL (dbt source/ref calls), the same SQL over real tables, and its pipeline inputs."""
    try:
        analysis = analyze_query(sql)
    except QueryRejected as error:
        raise _rejected(error.reason) from None
    dbt_calls: dict[TableRef, str] = {}
    direct: dict[TableRef, str] = {}
    inputs: list[tuple[TableRef, str, tuple[str, ...]]] = []
    for ref in analysis.tables:
        database, table = ref.qualified("default")
        if database in INTERNAL_DATABASES or database.startswith("_"):
            raise _rejected(f"{database}.{table} is a platform-internal table")
        found = readable.get((database, table))
        if found is None:
            raise PermissionDenied(
                f"The query reads {database}.{table}, which is not a table you may read "
                "(pipeline targets and datamarts only)",
                details={"table": f"{database}.{table}"},
            )
        kind, value = found
        if kind == "ref" and value == name:
            raise _rejected("a datamart may not read itself")
        dbt_calls[ref] = (
            source_call(name, database, table) if kind == "source" else f"{{{{ ref('{value}') }}}}"
        )
        direct[ref] = quoted(database, table)
        if kind == "source":
            inputs.append((ref, database, tuple(value)))
    return model_sql(analysis, dbt_calls, "default"), model_sql(analysis, direct, "default"), inputs


def describe_query(client: Client, sql: str) -> list[tuple[str, str]]:
    """Column names and types of the SELECT, asked of the warehouse (so a wrong column is a 422 now)."""
    try:
        result = client.query(f"DESCRIBE TABLE ({sql})")
    except ClickHouseError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "query failed"
        raise _rejected(f"the warehouse refused it: {first[:500]}") from None
    columns = [(str(r[0]), str(r[1])) for r in result.result_rows]
    seen: set[str] = set()
    for column, _ in columns:
        if column in seen:
            raise _rejected(f"two columns are named {column!r}; give them aliases")
        seen.add(column)
    return columns


# -- model files ----------------------------------------------------------------------------------


def model_folder() -> Path:
    return datamart_models_dir().joinpath(*MODEL_SUBDIR)


def write_model(name: str, sql_text: str, yml_text: str) -> tuple[Path, Path]:
    folder = model_folder()
    folder.mkdir(parents=True, exist_ok=True)
    sql_path, yml_path = folder / f"{name}.sql", folder / f"{name}.yml"
    for path, text in ((sql_path, sql_text), (yml_path, yml_text)):
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(text)
        partial.replace(path)
    return sql_path, yml_path


def remove_model(name: str) -> None:
    for suffix in (".sql", ".yml"):
        (model_folder() / f"{name}{suffix}").unlink(missing_ok=True)


def restore_model(name: str, version: DatamartVersion | None) -> None:
    if version is None:
        remove_model(name)
    else:
        write_model(name, version.model_sql, version.properties_yml)


def parse_project() -> str | None:
    """Re-parse the manifest; the error text when the project does not parse."""
    try:
        prepare_dbt_manifest(force=True)
    except DbtManifestMissing as error:
        return str(error)
    return None


def reload_location() -> str | None:
    """Reload `aetl_datamarts`; why it failed, if it did."""
    try:
        location = dagster_for_reloads().reload_location(LOCATION)
    except DagsterUnavailable as error:
        logger.warning("reload of %s: %s", LOCATION, error.message)
        return f"Dagster did not reload the datamarts code location: {error.message}"
    except DagsterClientError as error:
        logger.warning("reload of %s failed: %s", LOCATION, error.internal_message[:2000])
        return f"Dagster could not load the datamarts code location: {error.message}"
    if location.load_failed:
        return "Dagster could not load the datamarts code location"
    dagster().workspace_index(refresh=True)
    return None


# -- create ---------------------------------------------------------------------------------------


def get_datamart(session: Session, name: str, *, for_update: bool = False) -> Datamart:
    query = select(Datamart).where(Datamart.name == name, Datamart.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    datamart = session.scalar(query)
    if datamart is None:
        raise NotFound("Datamart not found", details={"datamart_name": name})
    return datamart


def latest_version(session: Session, datamart: Datamart) -> DatamartVersion | None:
    return session.scalar(
        select(DatamartVersion)
        .where(DatamartVersion.datamart_id == datamart.id)
        .order_by(DatamartVersion.number.desc())
        .limit(1)
    )


def _hand_written_model_exists(name: str) -> bool:
    from orchestration.dbt import DBT_PROJECT_DIR

    return any(p.stem == name for p in (DBT_PROJECT_DIR / "models").rglob("*.sql"))


def create_datamart(
    session: Session, principal: Principal, body: DatamartCreate, ip: str | None
) -> tuple[Datamart, Run | None]:
    """Check, write, parse, reload, build once. A datamart whose last build failed may be re-created."""
    user = principal.user
    cron = check_cron(body.refresh_schedule, "refresh_schedule") if body.refresh_schedule else None
    if _hand_written_model_exists(body.name):
        raise Conflict("A dbt model of that name exists", details={"datamart_name": body.name})
    existing = session.scalar(select(Datamart).where(Datamart.name == body.name))
    if existing is not None and existing.deleted_at is None and existing.status != "failed":
        raise Conflict("Datamart already exists", details={"datamart_name": body.name})
    if existing is not None and existing.deleted_at is not None:
        raise Conflict("A deleted datamart had that name", details={"datamart_name": body.name})
    dbt_sql, direct_sql, inputs = resolve_inputs(
        body.name, body.source_query, readable_tables(session, principal)
    )
    session.commit()  # no transaction open while the warehouse and Dagster work
    client = warehouse()
    try:
        columns = describe_query(client, direct_sql)
    finally:
        client.close()
    with _project_lock:
        datamart = existing or Datamart(name=body.name, created_by=user.id, version=0)
        previous = latest_version(session, datamart) if existing is not None else None
        number = (previous.number if previous else 0) + 1
        sql_text = render_model(body.name, dbt_sql, materialized=body.materialized, version=number)
        yml_text = render_properties(
            body.name,
            description=body.description,
            columns=columns,
            inputs=inputs,
            key_columns=key_columns(columns),
        )
        write_model(body.name, sql_text, yml_text)
        parse_error = parse_project()
        if parse_error is not None:
            restore_model(body.name, previous)
            parse_project()
            logger.warning("datamart %s does not parse: %s", body.name, parse_error[-2000:])
            raise _rejected("dbt could not parse the generated model")
        datamart.description = body.description
        datamart.connector_id = body.connector_id
        datamart.materialized = body.materialized
        datamart.refresh_schedule = cron
        datamart.schedule_enabled = cron is not None
        datamart.status = "building"
        datamart.version = number
        datamart.last_error = None
        session.add(datamart)
        session.flush()
        session.add(
            DatamartVersion(
                datamart_id=datamart.id,
                number=number,
                source_query=body.source_query,
                model_sql=sql_text,
                properties_yml=yml_text,
                created_by=user.id,
            )
        )
        log_activity(
            session, user.id, "datamart.create", "datamart", datamart.id, ip=ip,
            details={"name": body.name, "version": number, "materialized": body.materialized},
        )  # fmt: skip
        session.commit()
        location_error = reload_location()
    if location_error is not None:
        return _build_failed(session, datamart, location_error, None), None
    return build_once(session, datamart, user.id)


def _build_failed(session: Session, datamart: Datamart, error: str, run_id: str | None) -> Datamart:
    datamart.status = "failed"
    datamart.last_error = error
    datamart.last_run_id = run_id
    session.commit()
    return datamart


def build_once(session: Session, datamart: Datamart, user_id: str) -> tuple[Datamart, Run | None]:
    try:
        run_id = launch(datamart.name, user_id, concurrent=True, via="create")
    except DagsterClientError as error:
        return _build_failed(session, datamart, f"the build did not start: {error.message}", None), None
    datamart.last_run_id = run_id
    session.commit()
    try:
        run = dagster().wait_for_run(run_id, timeout=BUILD_TIMEOUT_SECONDS, poll_interval=0.5)
    except (TimeoutError, DagsterClientError) as error:
        return _build_failed(session, datamart, f"the build did not finish: {error}", run_id), None
    if run.status != RunStatus.SUCCESS:
        return _build_failed(session, datamart, f"dbt build failed (Dagster run {run_id})", run_id), run
    datamart.status = "active"
    datamart.built_at = utcnow()
    datamart.row_count = count_rows(datamart.name)
    session.commit()
    return datamart, run


def count_rows(name: str) -> int:
    client = warehouse()
    try:
        return int(str(client.command(f"SELECT count() FROM {quoted(datamart_database(), name)}")))
    finally:
        client.close()


# -- refresh and schedule -------------------------------------------------------------------------


def launch(name: str, user_id: str, *, concurrent: bool, via: str) -> str:
    return dagster().launch_run(
        job_name(name),
        tags={
            TAG_DATAMART: name,
            TAG_CONCURRENT: str(concurrent).lower(),
            TAG_TRIGGERED_BY: user_id,
            "aetl/trigger": via,
        },
        repository_location=LOCATION,
        repository_name=REPOSITORY,
    )


def _require_built(datamart: Datamart) -> None:
    if datamart.status == "building":
        raise Conflict(
            "The datamart is being built; try again when it is active",
            details={"datamart_name": datamart.name, "status": datamart.status},
        )


def refresh_datamart(
    session: Session, principal: Principal, name: str, concurrent: bool, ip: str | None
) -> tuple[str, dt.datetime]:
    datamart = get_datamart(session, name)
    _require_built(datamart)
    session.commit()
    try:
        run_id = launch(name, principal.user.id, concurrent=concurrent, via="api")
    except DagsterClientError as error:
        raise PipelineExecutionError(
            f"The refresh did not start: {error.message}", details={"datamart_name": name}
        ) from None
    datamart.last_run_id = run_id
    log_activity(
        session, principal.user.id, "datamart.refresh", "datamart", datamart.id, ip=ip,
        details={"run_id": run_id, "concurrent_mode": concurrent},
    )  # fmt: skip
    session.commit()
    return run_id, utcnow()


def schedule_datamart(
    session: Session, principal: Principal, name: str, cron_expression: str, enabled: bool, ip: str | None
) -> tuple[Datamart, dt.datetime | None]:
    cron = check_cron(cron_expression, "cron_expression")
    with _project_lock:
        datamart = get_datamart(session, name, for_update=True)
        _require_built(datamart)
        datamart.refresh_schedule, datamart.schedule_enabled = cron, enabled
        log_activity(
            session, principal.user.id, "datamart.schedule", "datamart", datamart.id, ip=ip,
            details={"cron": cron, "enabled": enabled},
        )  # fmt: skip
        session.commit()
        location_error = reload_location()
    if location_error is not None:
        raise PipelineExecutionError(location_error, details={"datamart_name": name})
    client = dagster()
    try:
        # the stored state wins over the definition's default once it was ever toggled: set it
        current = client.get_schedule(schedule_name(name))
        if enabled and current.status.value != "RUNNING":
            current = client.start_schedule(schedule_name(name))
        elif not enabled and current.status.value == "RUNNING":
            current = client.stop_schedule(schedule_name(name))
    except DagsterClientError as error:
        raise PipelineExecutionError(
            f"Dagster did not take the schedule: {error.message}", details={"datamart_name": name}
        ) from None
    next_run = (current.next_tick_at or next_fire(cron)) if enabled else None
    return datamart, next_run


def delete_datamart(session: Session, principal: Principal, name: str, ip: str | None) -> None:
    """Model files, the row (versions with it), the Dagster job and schedule, and the warehouse table."""
    with _project_lock:
        datamart = get_datamart(session, name, for_update=True)
        remove_model(name)
        log_activity(
            session, principal.user.id, "datamart.delete", "datamart", datamart.id, ip=ip,
            details={"name": name, "version": datamart.version},
        )  # fmt: skip
        session.delete(datamart)
        session.commit()
        parse_error = parse_project()
        if parse_error is not None:
            logger.warning("dbt parse after deleting %s: %s", name, parse_error[-2000:])
        location_error = reload_location()
    client = warehouse()
    try:
        client.command(f"DROP TABLE IF EXISTS {quoted(datamart_database(), name)}")
    finally:
        client.close()
    if location_error is not None:
        logger.warning("datamart %s deleted; %s", name, location_error)


def last_run(datamart: Datamart) -> Run | None:
    if not datamart.last_run_id:
        return None
    try:
        return dagster().get_run(datamart.last_run_id)
    except DagsterClientError:
        return None


# -- reading the data -----------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A warehouse value as typed JSON: numbers stay numbers, dates ISO 8601, the rest text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def preview(
    session: Session, name: str, limit: int
) -> tuple[list[str], list[str], list[list[Any]], int, int]:
    datamart = get_datamart(session, name)
    session.commit()
    if datamart.status == "building" and datamart.built_at is None:
        raise Conflict("The datamart is being built", details={"datamart_name": name})
    limit = min(limit, MAX_PREVIEW_ROWS)
    table = quoted(datamart_database(), name)
    client = warehouse()
    try:
        total = int(str(client.command(f"SELECT count() FROM {table}")))
        result = client.query(f"SELECT * FROM {table} LIMIT {int(limit)}")
    except ClickHouseError as error:
        logger.warning("preview of %s failed: %s", name, str(error)[:500])
        raise Conflict(
            "The datamart has no data in the warehouse (its build failed)", details={"datamart_name": name}
        ) from None
    finally:
        client.close()
    columns = list(result.column_names)
    types = [t.name for t in result.column_types]
    rows = [[json_value(v) for v in row] for row in result.result_rows]
    return columns, types, rows, total, limit


def export_excel(
    session: Session, name: str, *, include_summary: bool, include_charts: bool, base_url: str
) -> tuple[str, int, dt.datetime, WorkbookFacts]:
    """Write the datamart to an .xlsx under the data folder; a signed link that expires."""
    datamart = get_datamart(session, name)
    session.commit()
    if datamart.built_at is None:
        raise Conflict("The datamart has not been built", details={"datamart_name": name})
    settings = get_settings()
    folder = exports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    file_id = new_file_id(name)
    path = folder / f"{file_id}.xlsx"
    client = warehouse()
    try:
        with client.query_row_block_stream(
            f"SELECT * FROM {quoted(datamart_database(), name)}", settings={"max_block_size": 65_536}
        ) as stream:
            columns = list(stream.source.column_names)
            types = [t.name for t in stream.source.column_types]
            facts = write_workbook(
                path,
                name,
                columns,
                types,
                stream,
                include_summary=include_summary,
                include_charts=include_charts,
            )
    except ClickHouseError as error:
        path.unlink(missing_ok=True)
        logger.warning("export of %s failed: %s", name, str(error)[:500])
        raise Conflict(
            "The datamart could not be read from the warehouse", details={"datamart_name": name}
        ) from None
    finally:
        client.close()
    expires_at = utcnow() + dt.timedelta(seconds=EXPORT_LINK_SECONDS)
    expires = int(expires_at.timestamp())
    signature = sign(link_key(settings.secret_key.get_secret_value()), file_id, expires)
    query = f"expires={expires}&signature={signature}"
    url = f"{base_url.rstrip('/')}/api/v1/mvp/export/files/{file_id}.xlsx?{query}"
    return url, path.stat().st_size, dt.datetime.fromtimestamp(expires, dt.UTC), facts


def link_key(secret: str) -> bytes:
    """Download links have their own key, derived from the app secret (never the JWT key itself)."""
    return hashlib.sha256(f"aetl-export-links:{secret}".encode()).digest()


def exports_dir() -> Path:
    return get_settings().data_dir.resolve() / "exports"


def export_file(file_id: str, expires: int, signature: str) -> Path:
    """The file a signed link names: 403 for a wrong signature, 410 once it expired or is gone."""
    key = link_key(get_settings().secret_key.get_secret_value())
    if not check_signature(key, file_id, expires, signature):
        raise PermissionDenied("The download link is not valid")
    path = exports_dir() / f"{file_id}.xlsx"
    if expired(expires) or not path.is_file():
        raise Gone("The download link has expired", details={"expired_at": expires})
    return path
