"""Webhooks domain: run-status sensors that turn every run's start, success and failure into
`pipeline.started/completed/failed` deliveries, whoever launched the run (API, schedule, sensor,
Dagster UI). Subscriptions live in the metadata DB (DATABASE_URL); signing, target checks, retries
and the delivery log are the API's one implementation (api.webhooks.delivery).

Alerts come from the same sensors and from Dagster's run storage alone: when a pipeline's (or, for
runs without a pipeline, a job's) finished runs fail AETL_ALERT_CONSECUTIVE_FAILURES times in a row
(default 3), `alert.triggered`; its next successful run sends `alert.resolved`. Both carry the same
`alert_id` (the subject and the first failed run of the streak), and each is sent once.
"""

from __future__ import annotations

from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    run_status_sensor,
)

PIPELINE_ID_TAG = "aetl/pipeline_id"
EVENT_BY_STATUS = {
    DagsterRunStatus.STARTED: ("pipeline.started", "started"),
    DagsterRunStatus.SUCCESS: ("pipeline.completed", "success"),
    DagsterRunStatus.FAILURE: ("pipeline.failed", "failed"),
}


def run_event_data(
    *, run_id: str, job_name: str, tags: dict[str, str], status: str, start: float | None, end: float | None
) -> dict[str, Any]:
    """The payload's `data` for a run (pure: unit-tested without Dagster)."""
    duration = round(end - start, 3) if start is not None and end is not None else None
    return {
        "pipeline_id": tags.get(PIPELINE_ID_TAG),
        "job_name": job_name,
        "dagster_job_name": job_name,
        "run_id": run_id,
        "dagster_run_id": run_id,
        "status": status,
        "duration_seconds": duration,
        "code_location": tags.get("dagster/code_location"),
        "triggered_by": tags.get("aetl/triggered_by"),
    }


# how far back a resolving success looks for the streak it ends
STREAK_LOOKBACK = 500


def failure_streak(finished: list[tuple[str, str]]) -> list[str]:
    """Run ids of the leading failures of newest-first (run_id, status) pairs (pure)."""
    streak: list[str] = []
    for run_id, status in finished:
        if status != "FAILURE":
            break
        streak.append(run_id)
    return streak


def alert_for(
    subject: str, finished: list[tuple[str, str]], threshold: int
) -> tuple[str, dict[str, Any]] | None:
    """The alert event the newest finished run causes, if any (pure: unit-tested without Dagster).

    `finished` is newest first and starts with the run that just ended."""
    if not finished:
        return None
    run_id, status = finished[0]
    if status == "FAILURE":
        streak = failure_streak(finished)
        # exactly at the threshold: a longer streak was already announced
        if len(streak) != threshold:
            return None
        event, first = "alert.triggered", streak[-1]
        detail = {"consecutive_failures": len(streak), "state": "triggered", "severity": "critical"}
    elif status == "SUCCESS":
        streak = failure_streak(finished[1:])
        if len(streak) < threshold:
            return None
        event, first = "alert.resolved", streak[-1]
        detail = {"consecutive_failures": len(streak), "state": "resolved", "resolved_by_run_id": run_id}
    else:
        return None
    return event, {
        "alert_id": f"{subject}:{first}",
        "rule": "consecutive_run_failures",
        "threshold": threshold,
        "subject": subject,
        "first_failed_run_id": first,
        "run_id": run_id,
        "message": (
            f"{subject}: {len(streak)} runs failed in a row"
            if event == "alert.triggered"
            else f"{subject}: a run succeeded after {len(streak)} failed runs"
        ),
        **detail,
    }


def _finished_runs(instance: DagsterInstance, run: Any, limit: int) -> list[tuple[str, str]]:
    pipeline_id = run.tags.get(PIPELINE_ID_TAG)
    filters = (
        RunsFilter(
            tags={PIPELINE_ID_TAG: pipeline_id}, statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
        )
        if pipeline_id
        else RunsFilter(job_name=run.job_name, statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE])
    )
    records = instance.get_run_records(filters=filters, limit=limit)
    return [(r.dagster_run.run_id, r.dagster_run.status.value) for r in records]


def _publish_alert(
    context: RunStatusSensorContext, run_status: DagsterRunStatus, data: dict[str, Any]
) -> None:
    from api.core.config import get_settings
    from api.db.session import new_session
    from api.webhooks import delivery

    run = context.dagster_run
    threshold = get_settings().alert_consecutive_failures
    limit = threshold + 1 if run_status == DagsterRunStatus.FAILURE else STREAK_LOOKBACK
    subject = run.tags.get(PIPELINE_ID_TAG) or run.job_name
    alert = alert_for(subject, _finished_runs(context.instance, run, limit), threshold)
    if alert is None:
        return
    event, alert_data = alert
    alert_data |= {"pipeline_id": data["pipeline_id"], "job_name": run.job_name}
    with new_session() as session:
        sent = delivery.publish(session, event, f"{alert_data['alert_id']}:{event}", alert_data)
    context.log.info(f"{event} {alert_data['alert_id']}: {len(sent)} deliveries")


def _publish(context: RunStatusSensorContext, run_status: DagsterRunStatus) -> None:
    # imported here: the code location loads without the API's database until a run happens
    from api.db.session import new_session
    from api.webhooks import delivery

    event, status = EVENT_BY_STATUS[run_status]
    run = context.dagster_run
    stats = context.instance.get_run_stats(run.run_id)
    data = run_event_data(
        run_id=run.run_id,
        job_name=run.job_name,
        tags=dict(run.tags),
        status=status,
        start=stats.start_time,
        end=stats.end_time if run_status is not DagsterRunStatus.STARTED else None,
    )
    with new_session() as session:
        sent = delivery.publish(session, event, f"{run.run_id}:{event}", data)
    if sent:
        context.log.info(
            f"{event} for run {run.run_id}: " + ", ".join(f"{d.webhook_id}={d.status}" for d in sent)
        )
    if run_status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE):
        _publish_alert(context, run_status, data)


def _sensor(run_status: DagsterRunStatus) -> SensorDefinition:
    event, _ = EVENT_BY_STATUS[run_status]

    @run_status_sensor(
        run_status=run_status,
        name=f"webhooks_{event.replace('.', '_')}",
        monitor_all_code_locations=True,
        minimum_interval_seconds=5,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Delivers `{event}` to the webhooks subscribed to it (signed, retried, logged).",
    )
    def deliver_run_event(context: RunStatusSensorContext) -> None:
        _publish(context, run_status)

    return deliver_run_event


defs = Definitions(sensors=[_sensor(status) for status in EVENT_BY_STATUS])
