"""The one place that speaks GraphQL to Dagster (see client.py).

    client = DagsterClient(settings.dagster_url, timeout=30)   # one per process; thread-safe
    run_id = client.launch_run("warehouse_job", run_config={...}, tags={"aetl/pipeline_id": "p_42"})
    run = client.get_run(run_id)            # Run: status, created/started/ended_at, tags, stats
    page = client.list_runs(tags={"aetl/pipeline_id": "p_42"}, limit=20, cursor=None)
    logs = client.get_run_logs(run_id, cursor=None)   # pass logs.cursor back for newer events only
    client.terminate_run(run_id); client.reload_location("aetl")
    client.start_schedule(name) / stop_schedule / start_sensor / stop_sensor (names, any location)
    client.asset_materializations("calendar_days"); client.daemon_health(); client.code_locations()

Every failure is a DagsterClientError with `http_status`, `error_code`, `aggregator_code`, `message`,
`details` (safe for response bodies) and `internal_message` (for logs only).
"""

from api.dagster_client.client import DagsterClient
from api.dagster_client.errors import (
    DagsterClientError,
    DagsterConflict,
    DagsterInvalidRequest,
    DagsterNotFound,
    DagsterRunError,
    DagsterUnavailable,
)
from api.dagster_client.models import (
    AssetMaterialization,
    CodeLocation,
    DaemonHealth,
    DaemonStatus,
    InstigationStatus,
    LocationReload,
    Run,
    RunEvent,
    RunLogs,
    RunPage,
    RunStats,
    RunStatus,
    Schedule,
    Sensor,
)

__all__ = [
    "AssetMaterialization",
    "CodeLocation",
    "DaemonHealth",
    "DaemonStatus",
    "DagsterClient",
    "DagsterClientError",
    "DagsterConflict",
    "DagsterInvalidRequest",
    "DagsterNotFound",
    "DagsterRunError",
    "DagsterUnavailable",
    "InstigationStatus",
    "LocationReload",
    "Run",
    "RunEvent",
    "RunLogs",
    "RunPage",
    "RunStats",
    "RunStatus",
    "Schedule",
    "Sensor",
]
