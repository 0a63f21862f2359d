"""The one place that speaks GraphQL to Dagster (see client.py)."""

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
