"""Webhooks domain: run-status sensors that turn every run's start, success and failure into
`pipeline.started/completed/failed` deliveries, whoever launched the run (API, schedule, sensor,
Dagster UI). Subscriptions live in the metadata DB (DATABASE_URL); signing, target checks, retries
and the delivery log are the API's one implementation (api.webhooks.delivery).
"""

from __future__ import annotations

from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
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
