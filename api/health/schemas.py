"""Bodies of the health endpoints (ai-etl bare bodies at the root, envelopes under /api/v1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from api.core.schemas import UTCDateTime


class Liveness(BaseModel):
    status: Literal["healthy"] = "healthy"
    version: str
    timestamp: UTCDateTime


class ComponentHealth(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["healthy", "unhealthy", "not_configured"]
    latency_ms: float | None = None
    error: str | None = None


class DetailedHealth(BaseModel):
    status: Literal["healthy", "unhealthy"]
    components: dict[str, ComponentHealth]
    version: str
    timestamp: UTCDateTime


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, ComponentHealth]


class CacheHealth(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["healthy", "unhealthy", "not_configured"]
    backend: str
    rate_limit_storage: str
    detail: str | None = None
    latency_ms: float | None = None


class SystemHealth(BaseModel):
    status: Literal["healthy", "unhealthy"]
    cpu: dict[str, Any]
    memory: dict[str, Any]
    disk: dict[str, Any]
    process: dict[str, Any]
