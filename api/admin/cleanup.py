"""System cleanup of the metadata DB: old activity logs, expired sessions and tokens, VACUUM ANALYZE.

Every operation measures what it removes (rows, and their on-disk size before deletion) and is
recorded in `cleanup_runs`, which `/admin/cleanup/history` reads. Estimates run the same queries
without deleting.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, or_, select, text
from sqlalchemy.orm import Session

from api.activity.models import ActivityLog
from api.admin import cleanup_dagster
from api.admin.deletion import mb
from api.admin.models import CleanupRun
from api.auth.models import AccountToken, RefreshToken
from api.connectors.models import Connector
from api.core import security
from api.dagster_client import DagsterClientError
from api.pipelines.models import Pipeline
from api.users.models import User

logger = logging.getLogger("api.admin")

# used or expired mailed tokens are kept this long (an audit trail of recent resets), then removed
SPENT_TOKEN_GRACE = timedelta(days=1)


def _size(session: Session, table: Table, where: Any) -> tuple[int, int]:
    """(rows, bytes on disk) matching `where` in `table`."""
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(func.pg_column_size(table.table_valued())), 0))
        .select_from(table)
        .where(where)
    ).one()
    return int(count), int(size)


def _deleted(session: Session, statement: Any) -> int:
    return int(cast("CursorResult[Any]", session.execute(statement)).rowcount or 0)


def _activity_where(retention_days: int) -> Any:
    return ActivityLog.created_at < security.utcnow() - timedelta(days=retention_days)


def _refresh_where() -> Any:
    # revoked but unexpired tokens stay: they are how a replayed refresh token is recognised
    return RefreshToken.expires_at < security.utcnow()


def _account_token_where() -> Any:
    cutoff = security.utcnow() - SPENT_TOKEN_GRACE
    return or_(AccountToken.expires_at < cutoff, AccountToken.used_at < cutoff)


CLEANUP_TYPES = ("activity-logs", "temp-files", "orphaned-data", "execution-logs", "expired-sessions")


def estimate(
    session: Session, cleanup_type: str, retention_days: int, retention_hours: int = 24
) -> dict[str, Any]:
    """What the cleanup of `cleanup_type` would remove now, found by the same walk without deleting."""
    started = time.perf_counter()
    retention: dict[str, Any] = {"retention_days": None}
    files = 0
    if cleanup_type == "activity-logs":
        rows, size = _size(session, ActivityLog.__table__, _activity_where(retention_days))  # type: ignore[arg-type]
        retention["retention_days"] = retention_days
    elif cleanup_type == "expired-sessions":
        r1, s1 = _size(session, RefreshToken.__table__, _refresh_where())  # type: ignore[arg-type]
        r2, s2 = _size(session, AccountToken.__table__, _account_token_where())  # type: ignore[arg-type]
        rows, size = r1 + r2, s1 + s2
    elif cleanup_type == "temp-files":
        found = cleanup_dagster.temp_files(retention_hours, apply=False)
        rows, files, size = 0, found["files"], found["bytes"]
        retention["retention_hours"] = retention_hours
    elif cleanup_type == "execution-logs":
        session.commit()  # no transaction held while Dagster answers
        found = cleanup_dagster.execution_logs(retention_days, apply=False)
        rows, files, size = found["records"], found["files"], found["bytes"]
        retention |= {"retention_days": retention_days, "runs": found["runs"], "events": found["events"]}
    else:
        found = cleanup_dagster.orphaned_data(session, apply=False)
        rows, files = len(found["tables"]) + len(found["assets"]), found["files"]
        size = found["table_bytes"] + found["file_bytes"]
        retention |= {
            "tables": found["tables"],
            "assets": found["assets"],
            "pending_loads": found["pending_loads"],
        }
    return {
        "cleanup_type": cleanup_type.replace("-", "_"),
        "estimated_records": rows,
        "estimated_files": files,
        "estimated_space_mb": mb(size),
        "estimated_space_bytes": size,
        # the cleanup does the same walk plus the deletes: about as long as this count took
        "estimated_duration_seconds": round(time.perf_counter() - started, 3),
        **retention,
    }


def _record(
    session: Session, actor: User | None, operation: str, result: dict[str, Any], started: float
) -> dict[str, Any]:
    result["duration_seconds"] = round(time.perf_counter() - started, 3)
    result["timestamp"] = security.utcnow()
    session.add(
        CleanupRun(
            operation=operation,
            user_id=actor.id if actor else None,
            status=str(result.get("status", "success")),
            records_deleted=int(result.get("records_deleted", result.get("sessions_deleted", 0))),
            space_freed_bytes=int(result.get("space_freed_bytes", 0)),
            duration_seconds=result["duration_seconds"],
            details={k: v for k, v in result.items() if k not in ("timestamp",)},
        )
    )
    session.commit()
    return result


def cleanup_activity_logs(session: Session, actor: User | None, retention_days: int) -> dict[str, Any]:
    started = time.perf_counter()
    where = _activity_where(retention_days)
    _, size = _size(session, ActivityLog.__table__, where)  # type: ignore[arg-type]
    deleted = _deleted(session, delete(ActivityLog).where(where))
    result = {
        "operation": "cleanup_activity_logs",
        "records_deleted": int(deleted or 0),
        "space_freed_mb": mb(size),
        "space_freed_bytes": size,
        "retention_days": retention_days,
    }
    return _record(session, actor, "cleanup_activity_logs", result, started)


def cleanup_expired_sessions(session: Session, actor: User | None) -> dict[str, Any]:
    started = time.perf_counter()
    _, s1 = _size(session, RefreshToken.__table__, _refresh_where())  # type: ignore[arg-type]
    _, s2 = _size(session, AccountToken.__table__, _account_token_where())  # type: ignore[arg-type]
    sessions = _deleted(session, delete(RefreshToken).where(_refresh_where()))
    tokens = _deleted(session, delete(AccountToken).where(_account_token_where()))
    result = {
        "operation": "cleanup_expired_sessions",
        "sessions_deleted": int(sessions or 0),
        "account_tokens_deleted": int(tokens or 0),
        "records_deleted": int(sessions or 0) + int(tokens or 0),
        "memory_freed_mb": mb(s1 + s2),
        "space_freed_bytes": s1 + s2,
    }
    return _record(session, actor, "cleanup_expired_sessions", result, started)


def database_vacuum(session: Session, actor: User | None) -> dict[str, Any]:
    started = time.perf_counter()
    engine = session.get_bind()
    # VACUUM cannot run inside a transaction block
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # type: ignore[union-attr]
        before = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        tables = conn.execute(text("SELECT count(*) FROM pg_stat_user_tables")).scalar_one()
        conn.execute(text("VACUUM ANALYZE"))
        after = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    reclaimed = max(before - after, 0)
    result = {
        "operation": "database_vacuum",
        "tables_processed": int(tables),
        "space_reclaimed_mb": mb(reclaimed),
        "space_freed_bytes": reclaimed,
        "records_deleted": 0,
    }
    return _record(session, actor, "database_vacuum", result, started)


def cleanup_temp_files(session: Session, actor: User | None, retention_hours: int) -> dict[str, Any]:
    started = time.perf_counter()
    found = cleanup_dagster.temp_files(retention_hours, apply=True)
    result = {
        "operation": "cleanup_temp_files",
        "files_deleted": found["files"],
        "records_deleted": 0,
        "space_freed_mb": mb(found["bytes"]),
        "space_freed_bytes": found["bytes"],
        "retention_hours": retention_hours,
        "removed": found["items"][:100],
    }
    return _record(session, actor, "cleanup_temp_files", result, started)


def cleanup_orphaned_data(session: Session, actor: User | None) -> dict[str, Any]:
    started = time.perf_counter()
    found = cleanup_dagster.orphaned_data(session, apply=True)
    freed = found["table_bytes"] + found["file_bytes"]
    result = {
        "operation": "cleanup_orphaned_data",
        "records_deleted": len(found["tables"]) + len(found["assets"]),
        "tables_dropped": found["tables"],
        "assets_wiped": found["assets"],
        "files_deleted": found["files"],
        "affected_tables": found["tables"],
        # kept: a retry of their load publishes them (publish.abandoned_load_tables)
        "pending_loads": found["pending_loads"],
        "space_freed_mb": mb(freed),
        "space_freed_bytes": freed,
    }
    return _record(session, actor, "cleanup_orphaned_data", result, started)


def cleanup_execution_logs(session: Session, actor: User | None, retention_days: int) -> dict[str, Any]:
    started = time.perf_counter()
    session.commit()  # no transaction held while Dagster answers
    found = cleanup_dagster.execution_logs(retention_days, apply=True)
    result = {
        "operation": "cleanup_execution_logs",
        "records_deleted": found["records"],
        "runs_deleted": found["runs"],
        "events_deleted": found["events"],
        "files_deleted": found["files"],
        "space_freed_mb": mb(found["bytes"]),
        "space_freed_bytes": found["bytes"],
        "retention_days": retention_days,
    }
    return _record(session, actor, "cleanup_execution_logs", result, started)


def _step(name: str, run: Any) -> dict[str, Any]:
    """One operation of cleanup-all: a Dagster that does not answer fails that step, not the others."""
    try:
        return {"name": name, "status": "success", **run()}
    except DagsterClientError as error:
        logger.warning("cleanup step %s failed: %s", name, error.message)
        return {"name": name, "status": "failed", "error": error.message, "records_deleted": 0}


def cleanup_all(
    session: Session,
    actor: User | None,
    retention_days: int,
    *,
    execution_days: int | None = None,
    temp_hours: int = 24,
) -> dict[str, Any]:
    """Every cleanup in turn; `retention_days` applies to activity and execution logs unless the
    schedule gives execution logs their own."""
    execution_days = execution_days or retention_days
    started = time.perf_counter()
    operations = [
        _step("activity_logs", lambda: cleanup_activity_logs(session, actor, retention_days)),
        _step("temp_files", lambda: cleanup_temp_files(session, actor, temp_hours)),
        _step("orphaned_data", lambda: cleanup_orphaned_data(session, actor)),
        _step("execution_logs", lambda: cleanup_execution_logs(session, actor, execution_days)),
        _step("database_vacuum", lambda: database_vacuum(session, actor)),
        _step("expired_sessions", lambda: cleanup_expired_sessions(session, actor)),
    ]
    freed = sum(int(op.get("space_freed_bytes", 0)) for op in operations)
    result = {
        "operation": "cleanup_all",
        "total_records_deleted": sum(int(op.get("records_deleted", 0)) for op in operations),
        "total_files_deleted": sum(int(op.get("files_deleted", 0)) for op in operations),
        "total_space_freed_mb": mb(freed),
        "space_freed_bytes": freed,
        "records_deleted": sum(int(op.get("records_deleted", 0)) for op in operations),
        "operations": [{k: v for k, v in op.items() if k != "timestamp"} for op in operations],
        "failed_operations": [op["name"] for op in operations if op["status"] != "success"],
    }
    if result["failed_operations"]:
        result["status"] = "partial"
    result = _record(session, actor, "cleanup_all", result, started)
    result["total_duration_seconds"] = result["duration_seconds"]
    return result


def stats(session: Session) -> dict[str, Any]:
    size, tables, last_vacuum = session.execute(
        text(
            "SELECT pg_database_size(current_database()), count(*), "
            "max(greatest(last_vacuum, last_autovacuum)) FROM pg_stat_user_tables"
        )
    ).one()
    now = security.utcnow()
    temp = cleanup_dagster.temp_files(24, apply=False)
    return {
        "database": {"total_size_mb": mb(int(size)), "table_count": int(tables), "last_vacuum": last_vacuum},
        "records": {
            "users": session.scalar(select(func.count()).select_from(User)) or 0,
            "activity_logs": session.scalar(select(func.count()).select_from(ActivityLog)) or 0,
            "refresh_tokens": session.scalar(select(func.count()).select_from(RefreshToken)) or 0,
            "expired_sessions": session.scalar(
                select(func.count()).select_from(RefreshToken).where(RefreshToken.expires_at < now)
            )
            or 0,
            "pipelines": session.scalar(select(func.count()).select_from(Pipeline)) or 0,
            "connectors": session.scalar(select(func.count()).select_from(Connector)) or 0,
        },
        # what temp-files would remove with the default retention of 24 hours
        "temp_files": {"count": temp["files"], "total_size_mb": mb(temp["bytes"])},
    }


def history(
    session: Session,
    *,
    page: int,
    limit: int,
    operation: str | None,
    start: datetime | None,
    end: datetime | None,
) -> tuple[list[dict[str, Any]], int]:
    query = select(CleanupRun, User.username).outerjoin(User, User.id == CleanupRun.user_id)
    if operation:
        query = query.where(CleanupRun.operation == operation)
    if start:
        query = query.where(CleanupRun.created_at >= start)
    if end:
        query = query.where(CleanupRun.created_at < end)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(
        query.order_by(CleanupRun.created_at.desc(), CleanupRun.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return [
        {
            "id": run.id,
            "operation": run.operation,
            "user_id": run.user_id,
            "username": username,
            "records_deleted": run.records_deleted,
            "space_freed_mb": mb(run.space_freed_bytes),
            "duration_seconds": run.duration_seconds,
            "status": run.status,
            "timestamp": run.created_at,
        }
        for run, username in rows
    ], int(total or 0)
