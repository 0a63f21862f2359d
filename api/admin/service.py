"""Administration rules: the audit trail read back, and time-limited system settings."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.activity.models import ActivityLog
from api.activity.service import log_activity
from api.admin.models import SystemSetting
from api.core import security
from api.core.config import get_settings
from api.users.models import User

DEV_ROLE_PRODUCTION = "dev_role_production"
DEV_ROLES = frozenset({"developer", "architect"})
# keys whose values are never shown, whatever a service put into an entry's details
_SECRET_KEY = re.compile(r"pass|secret|token|key|credential|authorization|otp", re.IGNORECASE)
REDACTED = "********"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def list_activity(
    session: Session,
    *,
    user_id: str | None,
    action: str | None,
    resource_type: str | None,
    resource_id: str | None,
    status: str | None,
    start: datetime | None,
    end: datetime | None,
    skip: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    query = select(ActivityLog, User.username).outerjoin(User, User.id == ActivityLog.user_id)
    if user_id:
        query = query.where(ActivityLog.user_id == user_id)
    if action:
        # "user.*" matches every user action
        query = query.where(
            ActivityLog.action.startswith(action[:-1])
            if action.endswith("*")
            else ActivityLog.action == action
        )
    if resource_type:
        query = query.where(ActivityLog.resource_type == resource_type)
    if resource_id:
        query = query.where(ActivityLog.resource_id == resource_id)
    if status:
        query = query.where(ActivityLog.status == status)
    if start:
        query = query.where(ActivityLog.created_at >= start)
    if end:
        query = query.where(ActivityLog.created_at < end)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(
        query.order_by(ActivityLog.created_at.desc(), ActivityLog.id.desc()).offset(skip).limit(limit)
    )
    items = [
        {
            "id": log.id,
            "user_id": log.user_id,
            "username": username,
            "action": log.action,
            "status": log.status,
            "resource_type": log.resource_type,
            "resource_id": log.resource_id,
            "details": redact(log.details or {}),
            "ip_address": log.ip_address,
            "request_id": log.request_id,
            "timestamp": log.created_at,
        }
        for log, username in rows
    ]
    return items, int(total or 0)


# --- developer role in production ----------------------------------------------------------------


def dev_role_production(session: Session) -> dict[str, Any]:
    environment = get_settings().environment
    row = session.get(SystemSetting, DEV_ROLE_PRODUCTION)
    live = (
        row is not None
        and bool(row.value.get("allow"))
        and row.expires_at is not None
        and row.expires_at > security.utcnow()
    )
    return {
        "allowed": live,
        "expires_at": row.expires_at if live and row else None,
        "environment": environment,
        "duration_hours": row.value.get("duration_hours") if live and row else None,
        "approved_by": row.updated_by if live and row else None,
    }


def set_dev_role_production(
    session: Session, actor: User, *, allow: bool, duration_hours: int, ip: str | None
) -> dict[str, Any]:
    row = session.get(SystemSetting, DEV_ROLE_PRODUCTION, with_for_update=True)
    if row is None:
        row = SystemSetting(key=DEV_ROLE_PRODUCTION)
        session.add(row)
    row.value = {"allow": allow, "duration_hours": duration_hours if allow else None}
    # the approval lapses by itself: nothing has to run to switch it off
    row.expires_at = security.utcnow() + timedelta(hours=duration_hours) if allow else None
    row.updated_by = actor.id
    log_activity(
        session,
        actor.id,
        "settings.dev_role_production",
        "setting",
        DEV_ROLE_PRODUCTION,
        ip=ip,
        details={"allow": allow, "duration_hours": duration_hours if allow else None},
    )
    session.commit()
    return dev_role_production(session)


def dev_role_refused(session: Session, user: User) -> bool:
    """In production, developer-level accounts work only while an administrator's approval lasts."""
    if get_settings().environment != "production" or user.role not in DEV_ROLES:
        return False
    return not dev_role_production(session)["allowed"]
