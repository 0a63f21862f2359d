"""Watched storage rules: mount (checked, credentials encrypted), watch (a Dagster sensor), import (a run).

Connecting, listing and inference use `orchestration.storage`; the sensors and the import job live in
the `aetl_pipelines` code location (orchestration/defs/watches.py), which reads the watches from this
database, so creating, pausing or removing a watch is a row change plus a reload or a sensor call.
"""

from __future__ import annotations

import logging
import posixpath
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.core.errors import AppError, Conflict, ConnectorError, NotFound, ServiceUnavailable, ValidationFailed
from api.dagster_client import DagsterClientError, DagsterNotFound, RunStatus
from api.db.models import User
from api.pipelines import service as pipelines_service
from api.storage.models import StorageImport, StorageMount, StorageWatch
from api.storage.schemas import ImportCreate, MountCreate, WatchCreate
from orchestration.connectors.config import MASK, file_roots
from orchestration.defs.watches import (
    IMPORT_JOB,
    TAG_IMPORT,
    TAG_STORAGE,
    import_run_config,
    sensor_name,
)
from orchestration.specs.pipeline_plan import TAG_TRIGGERED_BY
from orchestration.storage.importer import ImportFailed, check_target, infer_file
from orchestration.storage.inference import Column
from orchestration.storage.mounts import (
    MountConfig,
    PathRefused,
    Storage,
    StorageError,
    connected,
    normalize_relative,
)
from orchestration.storage.store import mount_from_stored, split_mount

logger = logging.getLogger("api.storage")

LOCATION = pipelines_service.LOCATION
# what the API shows for a run's state (Dagster's statuses stay in `dagster_status`)
IMPORT_STATUSES = {
    RunStatus.QUEUED: "processing",
    RunStatus.NOT_STARTED: "processing",
    RunStatus.STARTING: "processing",
    RunStatus.STARTED: "processing",
    RunStatus.SUCCESS: "completed",
    RunStatus.FAILURE: "failed",
    RunStatus.CANCELING: "failed",
    RunStatus.CANCELED: "failed",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _storage_failure(error: StorageError, **details: Any) -> AppError:
    if isinstance(error, PathRefused):
        return ValidationFailed(error.message, field="file_path", details={"reason": error.reason, **details})
    if error.reason in ("path", "path_outside_roots", "config"):
        return ValidationFailed(error.message, field="path", details={"reason": error.reason, **details})
    return ConnectorError(error.message, details={"reason": error.reason, **details})


# -- mounts ---------------------------------------------------------------------------------------


def _mount_config(body: MountCreate) -> MountConfig:
    credentials = body.credentials
    try:
        return MountConfig(
            storage_type=body.storage_type,
            path=body.path,
            host=body.host,
            port=body.port,
            share_name=body.share_name,
            username=credentials.username if credentials else None,
            password=credentials.password if credentials else None,
            private_key=credentials.private_key if credentials else None,
        )
    except ValueError as error:
        raise ValidationFailed(f"Invalid mount: {str(error).splitlines()[0][:300]}") from None


def _default_mount_point(body: MountCreate) -> str:
    if body.storage_type == "local":
        return "/" + body.path.strip("/")
    return "/mnt/" + "/".join(p for p in (body.host, body.share_name, body.path.strip("/")) if p)


def stored_config(row: StorageMount) -> MountConfig:
    try:
        return mount_from_stored(row.config, row.secrets)
    except ValueError as error:
        raise ConnectorError(str(error), details={"storage_id": row.id}) from None


def public_mount(row: StorageMount) -> dict[str, Any]:
    config = dict(row.config or {})
    if row.secrets:
        config["password"] = MASK
    return {
        "storage_id": row.id,
        "storage_type": row.storage_type,
        "status": row.status,
        "mount_point": row.mount_point,
        "available_space_gb": row.available_space_gb,
        "mounted_at": row.mounted_at,
        "config": config,
    }


def create_mount(session: Session, body: MountCreate, user: User, ip: str | None) -> StorageMount:
    if body.storage_type == "local" and not body.path.startswith("/"):
        raise ValidationFailed("a local mount needs an absolute path", field="path")
    if body.storage_type in ("sftp", "smb") and not body.host:
        raise ValidationFailed(f"an {body.storage_type} mount needs a host", field="host")
    if body.storage_type == "smb" and not body.share_name:
        raise ValidationFailed("an smb mount needs share_name", field="share_name")
    mount_point = posixpath.normpath(body.mount_point or _default_mount_point(body))
    if ".." in mount_point.split("/"):
        raise ValidationFailed("mount_point may not use '..'", field="mount_point")
    taken = session.scalar(
        select(func.count())
        .select_from(StorageMount)
        .where(StorageMount.mount_point == mount_point, StorageMount.deleted_at.is_(None))
    )
    if taken:
        raise Conflict(f"mount point {mount_point} is in use", details={"mount_point": mount_point})
    config = _mount_config(body)
    try:
        with connected(config, file_roots()) as storage:
            space = storage.available_space_gb()
    except StorageError as error:
        raise _storage_failure(error, storage_type=body.storage_type) from None
    public, token = split_mount(config)
    row = StorageMount(
        storage_type=body.storage_type,
        mount_point=mount_point,
        config=public,
        secrets=token,
        available_space_gb=space if space >= 0 else None,
        created_by=user.id,
    )
    session.add(row)
    session.flush()
    log_activity(
        session, user.id, "storage.mount", "storage", row.id, ip=ip, details={"type": row.storage_type}
    )
    session.commit()
    return row


def list_mounts(session: Session) -> list[StorageMount]:
    return list(
        session.scalars(
            select(StorageMount).where(StorageMount.deleted_at.is_(None)).order_by(StorageMount.mounted_at)
        )
    )


def get_mount(session: Session, storage_id: str) -> StorageMount:
    row = session.get(StorageMount, storage_id)
    if row is None or row.deleted_at is not None:
        raise NotFound("Storage not found", details={"storage_id": storage_id})
    return row


def delete_mount(session: Session, row: StorageMount, user: User, ip: str | None) -> None:
    now = utcnow()
    row.deleted_at = now
    watches = session.scalars(
        select(StorageWatch).where(StorageWatch.storage_id == row.id, StorageWatch.deleted_at.is_(None))
    ).all()
    for watch in watches:
        watch.deleted_at = now
    log_activity(session, user.id, "storage.unmount", "storage", row.id, ip=ip)
    session.commit()
    if watches:
        _reload()


# -- watches --------------------------------------------------------------------------------------


def public_watch(row: StorageWatch) -> dict[str, Any]:
    return {
        "watch_id": row.id,
        "storage_id": row.storage_id,
        "watch_path": row.watch_path,
        "file_pattern": row.file_pattern,
        "recursive": row.recursive,
        "auto_import": row.auto_import,
        "status": row.status,
        "files_detected": row.files_detected,
        "sensor_name": sensor_name(row.id),
        "last_checked_at": row.last_checked_at,
        "created_at": row.created_at,
        "import_config": row.import_config,
    }


def _reload() -> None:
    error = pipelines_service.reload_pipelines_location()
    if error:
        raise ServiceUnavailable(error, details={"location": LOCATION})


def _check_target_connector(session: Session, connector_id: str | None) -> None:
    """Imports load into the platform's warehouse; a connector id must name it."""
    if connector_id is None:
        return
    from api.connectors import service as connectors_service

    config = connectors_service.connector_config(connectors_service.get_connector(session, connector_id))
    if getattr(config, "is_platform_warehouse", False) is not True:
        raise ValidationFailed(
            "imports load into the platform's warehouse only: target_connector_id must be a "
            "clickhouse connector without a host",
            field="target_connector_id",
        )


def create_watch(session: Session, body: WatchCreate, user: User, ip: str | None) -> StorageWatch:
    mount = get_mount(session, body.storage_id)
    if body.auto_import and body.import_config is None:
        raise ValidationFailed("auto_import needs import_config.target_table", field="import_config")
    point = mount.mount_point.rstrip("/") + "/"
    # "/exports/daily" is a folder of the mount; a path may also start with the mount point itself
    given = body.watch_path[len(point) - 1 :] if body.watch_path.startswith(point) else body.watch_path
    try:
        folder = normalize_relative(given.lstrip("/"))
    except PathRefused as error:
        raise ValidationFailed(error.message, field="watch_path") from None
    if body.import_config is not None:
        _check_target_connector(session, body.import_config.target_connector_id)
    try:
        with connected(stored_config(mount), file_roots()) as storage:
            storage.list_files(folder, body.file_pattern, False)  # the folder is there and readable
    except StorageError as error:
        raise _storage_failure(error, storage_id=mount.id) from None
    row = StorageWatch(
        storage_id=mount.id,
        watch_path="/" + folder,
        file_pattern=body.file_pattern,
        recursive=body.recursive,
        auto_import=body.auto_import,
        import_config=body.import_config.model_dump(exclude_none=True) if body.import_config else {},
        poll_interval_seconds=body.poll_interval_seconds,
        created_by=user.id,
    )
    session.add(row)
    session.flush()
    log_activity(
        session, user.id, "storage.watch", "storage", row.id, ip=ip, details={"storage_id": mount.id}
    )
    session.commit()
    _reload()
    return row


def list_watches(session: Session, storage_id: str | None = None) -> list[StorageWatch]:
    query = select(StorageWatch).where(StorageWatch.deleted_at.is_(None)).order_by(StorageWatch.created_at)
    if storage_id:
        query = query.where(StorageWatch.storage_id == storage_id)
    return list(session.scalars(query))


def get_watch(session: Session, watch_id: str) -> StorageWatch:
    row = session.get(StorageWatch, watch_id)
    if row is None or row.deleted_at is not None:
        raise NotFound("Watch not found", details={"watch_id": watch_id})
    return row


def set_watch_running(
    session: Session, row: StorageWatch, running: bool, user: User, ip: str | None
) -> StorageWatch:
    """Start or stop the watch's sensor in Dagster; the stored status follows what Dagster did."""
    client = pipelines_service.dagster()
    try:
        if running:
            client.start_sensor(sensor_name(row.id))
        else:
            client.stop_sensor(sensor_name(row.id))
    except DagsterNotFound:
        raise ServiceUnavailable(
            "the watch's sensor is not loaded in Dagster yet", details={"watch_id": row.id}
        ) from None
    except DagsterClientError as error:
        raise ServiceUnavailable(error.message, details={"watch_id": row.id}) from None
    row.status = "active" if running else "paused"
    log_activity(
        session, user.id, f"storage.watch.{'resume' if running else 'pause'}", "storage", row.id, ip=ip
    )
    session.commit()
    return row


def delete_watch(session: Session, row: StorageWatch, user: User, ip: str | None) -> None:
    row.deleted_at = utcnow()
    log_activity(session, user.id, "storage.watch.delete", "storage", row.id, ip=ip)
    session.commit()
    _reload()


# -- imports --------------------------------------------------------------------------------------


def _locate(session: Session, body: ImportCreate) -> tuple[StorageMount, str]:
    """The mount and the path inside it; refused when the path leaves every mount."""
    if body.storage_id:
        mount = get_mount(session, body.storage_id)
    else:
        if not body.file_path.startswith("/"):
            raise ValidationFailed("a relative file_path needs storage_id", field="file_path")
        candidates = [
            m
            for m in list_mounts(session)
            if body.file_path == m.mount_point or body.file_path.startswith(m.mount_point.rstrip("/") + "/")
        ]
        if not candidates:
            raise ValidationFailed(
                "file_path is not inside any mounted storage",
                field="file_path",
                details={"reason": "path_outside_mount"},
            )
        mount = max(candidates, key=lambda m: len(m.mount_point))
    try:
        return mount, normalize_relative(body.file_path, mount.mount_point)
    except PathRefused as error:
        raise ValidationFailed(error.message, field="file_path", details={"reason": error.reason}) from None


def _warehouse_client() -> Any:
    from orchestration.warehouse.client import default_url, get_client

    return get_client(
        default_url(), connect_timeout=10, send_receive_timeout=60, autogenerate_session_id=False
    )


def start_import(
    session: Session, body: ImportCreate, user: User, ip: str | None
) -> tuple[StorageImport, dict[str, Any]]:
    mount, path = _locate(session, body)
    _check_target_connector(session, body.target_connector_id)
    try:
        with connected(stored_config(mount), file_roots()) as storage:
            _is_file(storage, path)
            inferred = infer_file(storage, path, body.sheet)
    except StorageError as error:
        raise _storage_failure(error, storage_id=mount.id) from None
    except ImportFailed as error:
        raise ValidationFailed(
            f"{body.file_path}: {error}", field="file_path", details=error.details
        ) from None
    if not body.infer_schema:
        inferred.columns = (
            [Column(c.name, "string", True) for c in inferred.columns]
            if inferred.format == "csv"
            else inferred.columns
        )
    try:
        client = _warehouse_client()
    except Exception as error:  # noqa: BLE001 - the warehouse's own error names no secret, but stays in the log
        logger.warning("warehouse unreachable for an import check: %s", type(error).__name__)
        raise ServiceUnavailable("the warehouse is not reachable") from None
    try:
        check_target(
            client, inferred, body.target_table, body.target_database, body.create_table_if_not_exists
        )
    except ImportFailed as error:
        raise ValidationFailed(str(error), field="target_table", details=error.details) from None
    finally:
        client.close()
    row = StorageImport(
        storage_id=mount.id,
        file_path=body.file_path,
        target_table=body.target_table,
        target_database=body.target_database,
        inferred_schema=inferred.as_public(),
        estimated_rows=inferred.estimated_rows,
        created_by=user.id,
    )
    session.add(row)
    session.flush()
    import_config = {
        "target_table": body.target_table,
        "target_database": body.target_database,
        "create_table_if_not_exists": body.create_table_if_not_exists,
        "sheet": body.sheet,
    }
    try:
        run_id = pipelines_service.dagster().launch_run(
            IMPORT_JOB,
            run_config=import_run_config(mount.id, path, import_config, inferred.to_config()),
            tags={TAG_IMPORT: row.id, TAG_STORAGE: mount.id, TAG_TRIGGERED_BY: user.id},
            repository_location=LOCATION,
            repository_name=pipelines_service.REPOSITORY,
        )
    except DagsterClientError as error:
        session.rollback()
        raise ServiceUnavailable(f"the import could not be started: {error.message}") from None
    row.run_id = run_id
    log_activity(
        session, user.id, "storage.import", "storage", row.id, ip=ip,
        details={"run_id": run_id, "storage_id": mount.id, "table": body.target_table},
    )  # fmt: skip
    session.commit()
    estimate = {
        "exact": inferred.estimate_exact,
        "method": inferred.estimate_method,
    }
    return row, estimate


def _is_file(storage: Storage, path: str) -> None:
    try:
        storage.stat(path)
    except StorageError as error:
        if error.reason == "not_found":
            raise NotFound("File not found", details={"file_path": path}) from None
        raise


def get_import(session: Session, import_id: str) -> StorageImport:
    row = session.get(StorageImport, import_id)
    if row is None:
        raise NotFound("Import not found", details={"import_id": import_id})
    return row


def import_status(row: StorageImport) -> dict[str, Any]:
    """The import as its newest run says (a retried run's child carries the same import tag)."""
    client = pipelines_service.dagster()
    run = None
    try:
        runs = client.list_runs_with_metadata(job_name=IMPORT_JOB, tags={TAG_IMPORT: row.id}, limit=5).items
        run = runs[0] if runs else None
    except DagsterClientError as error:
        raise ServiceUnavailable(error.message) from None
    metadata: dict[str, Any] = {}
    for entry in run.materialization_metadata if run else []:
        metadata.update(entry if isinstance(entry, dict) else {})
    failure = None
    if run is not None and run.status is RunStatus.FAILURE:
        failure = _failure_message(client, run.run_id)
    table = f"{row.target_database}.{row.target_table}" if row.target_database else row.target_table
    return {
        "import_id": row.id,
        "status": IMPORT_STATUSES.get(run.status, "processing") if run else "processing",
        "run_id": run.run_id if run else row.run_id,
        "dagster_run_id": run.run_id if run else row.run_id,
        "storage_id": row.storage_id,
        "file_path": row.file_path,
        "target_table": table,
        "rows_loaded": _int(metadata.get("rows_loaded")),
        "rows_quarantined": _int(metadata.get("rows_quarantined")),
        "quarantine_table": f"{table}__rejected",
        "error": failure,
        "started_at": row.started_at,
        "finished_at": run.ended_at if run else None,
    }


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _failure_message(client: Any, run_id: str) -> str | None:
    try:
        logs = client.get_run_logs(run_id, limit=500)
    except DagsterClientError:
        return None
    for event in reversed(logs.events):
        if event.dagster_event_type == "STEP_FAILURE":
            return (event.error or event.message)[:1000]
    return None
