"""The cleanup schedule: a Dagster schedule (`system_cleanup_schedule` of the `aetl` location) of the
job `system_cleanup_job`, which runs every cleanup with the retention periods set here.

The setting lives in `system_settings`; the `aetl` location reads it when it loads (the cron), so a
change reloads that location and then starts or stops the schedule through Dagster's GraphQL API.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.admin.models import SystemSetting
from api.core.config import get_settings
from api.dagster_client import DagsterClient, DagsterClientError
from api.users.models import User

logger = logging.getLogger("api.admin")

CLEANUP_SCHEDULE = "cleanup_schedule"  # the setting's key
LOCATION = "aetl"
DAGSTER_JOB = "system_cleanup_job"
DAGSTER_SCHEDULE = "system_cleanup_schedule"
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "schedule": "0 2 * * *",
    "retention_periods": {"activity_logs_days": 90, "execution_logs_days": 30, "temp_files_hours": 24},
}


@lru_cache(maxsize=1)
def dagster() -> DagsterClient:
    # a reload re-imports the location in a new process: allow for a busy machine
    return DagsterClient(get_settings().dagster_url, timeout=300, location=LOCATION)


def read_setting(session: Session) -> dict[str, Any]:
    row = session.get(SystemSetting, CLEANUP_SCHEDULE)
    value = dict(row.value) if row else {}
    periods = {**DEFAULTS["retention_periods"], **(value.get("retention_periods") or {})}
    return {**DEFAULTS, **value, "retention_periods": periods}


def next_run(cron: str, now: datetime | None = None) -> datetime:
    return croniter(cron, now or datetime.now(UTC)).get_next(datetime).astimezone(UTC)  # type: ignore[no-any-return]


def describe(session: Session) -> dict[str, Any]:
    """The setting, when it fires next, its last run and the schedule as Dagster has it now."""
    setting = read_setting(session)
    session.commit()  # no transaction held while Dagster answers
    data: dict[str, Any] = {
        **setting,
        "next_run": next_run(setting["schedule"]) if setting["enabled"] else None,
        "last_run": None,
        "last_run_status": None,
        "dagster": None,
    }
    try:
        client = dagster()
        runs = client.list_runs(job_name=DAGSTER_JOB, limit=1).items
        if runs:
            data["last_run"] = runs[0].created_at
            data["last_run_status"] = runs[0].status.value.lower()
        schedule = client.get_schedule(DAGSTER_SCHEDULE)
        data["dagster"] = {
            "location": LOCATION,
            "job": DAGSTER_JOB,
            "schedule": DAGSTER_SCHEDULE,
            "cron": schedule.cron_schedule,
            "status": schedule.status.value,
        }
    except DagsterClientError as error:
        logger.warning("cleanup schedule: Dagster did not answer: %s", error.message)
    return data


def update(session: Session, actor: User, value: dict[str, Any], ip: str | None) -> None:
    row = session.get(SystemSetting, CLEANUP_SCHEDULE, with_for_update=True)
    if row is None:
        row = SystemSetting(key=CLEANUP_SCHEDULE)
        session.add(row)
    row.value = value
    row.updated_by = actor.id
    log_activity(
        session, actor.id, "settings.cleanup_schedule", "setting", CLEANUP_SCHEDULE, ip=ip, details=value
    )
    session.commit()


def apply_in_dagster(enabled: bool) -> None:
    """Background part of a change: reload `aetl` (the cron is read at load), then start or stop."""
    client = dagster()
    try:
        client.reload_location(LOCATION)
        running = client.get_schedule(DAGSTER_SCHEDULE).status.value == "RUNNING"
        if enabled and not running:
            client.start_schedule(DAGSTER_SCHEDULE)
        elif running and not enabled:
            client.stop_schedule(DAGSTER_SCHEDULE)
    except DagsterClientError as error:
        logger.warning("cleanup schedule not applied in Dagster: %s", error.internal_message or error.message)
