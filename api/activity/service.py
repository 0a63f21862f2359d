"""Audit trail: who did what, from where, under which request id."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.activity.models import ActivityLog
from api.core.context import get_request_id


def log_activity(
    session: Session,
    user_id: str | None,
    action: str,
    resource_type: str | None = None,
    resource_id: str | None = None,
    *,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
    status: str = "success",
) -> None:
    """Adds the entry to the caller's transaction: it is written if and only if the action is."""
    session.add(
        ActivityLog(
            user_id=user_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            details=details or {},
            status=status,
            ip_address=ip,
            request_id=get_request_id(),
        )
    )
