"""Health: `/health` (liveness) and `/health/detailed` at the root (ai-etl bodies); the aggregator's
`/api/v1/health/*` family in its envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.core.config import Settings
from api.core.responses import ERROR_RESPONSES, Responses
from api.core.schemas import Envelope, ok
from api.deps import CurrentPrincipal
from api.health import service as health_service
from api.health.schemas import CacheHealth, DetailedHealth, Liveness, Readiness, SystemHealth

root_router = APIRouter(tags=["health"])
# public: /health, /health/live, /health/ready, /health/detailed (and /api/v1/health); the rest
# (database, cache, system, metrics) tell an attacker too much and need a token
router = APIRouter(
    prefix="/health", tags=["health"], responses={k: ERROR_RESPONSES[k] for k in (401, 403, 429, 500)}
)

_UNHEALTHY: Responses = {503: {"description": "A component is down (same body, status unhealthy)"}}


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _liveness(request: Request) -> dict[str, Any]:
    return {"status": "healthy", "version": _settings(request).version, "timestamp": datetime.now(UTC)}


def _dagster_probe(request: Request) -> health_service.DagsterProbe | None:
    """One client per app, made on first use (its connection pool is reused by every check)."""
    state = request.app.state
    if state.dagster_probe is None:
        try:
            state.dagster_probe = state.dagster_probe_factory(_settings(request))
        except Exception:  # reported as an unhealthy component, not a failed request
            return None
    return state.dagster_probe  # type: ignore[no-any-return]


async def _detailed(request: Request) -> dict[str, Any]:
    state = request.app.state
    return await health_service.detailed_report(_settings(request), _dagster_probe(request), state.http)


@root_router.get("/health", response_model=Liveness)
def liveness_root(request: Request) -> object:
    """Liveness: the process answers. No dependency is checked (that is /health/detailed)."""
    return _liveness(request)


@root_router.get(
    "/health/detailed", response_model=DetailedHealth, responses=_UNHEALTHY, response_model_exclude_none=True
)
async def detailed_root(request: Request) -> object:
    """Database, warehouse, Dagster webserver and daemon, cache; checked concurrently. 503 when
    any configured component is down."""
    report = await _detailed(request)
    if report["status"] != health_service.HEALTHY:
        return JSONResponse(
            DetailedHealth.model_validate(report).model_dump(mode="json", exclude_none=True), status_code=503
        )
    return report


@router.get("", response_model=Envelope[DetailedHealth], response_model_exclude_none=True)
async def health(request: Request) -> object:
    """Comprehensive report (the detailed checks); `data.status` says healthy or unhealthy."""
    return ok(await _detailed(request))


@router.get("/live", response_model=Envelope[Liveness])
def live(request: Request) -> object:
    return ok(_liveness(request))


@router.get("/ready", response_model=Envelope[Readiness], responses=_UNHEALTHY)
async def ready(request: Request) -> object:
    """Ready when the metadata database answers (the API cannot serve a request without it)."""
    database = await health_service.database_report(_settings(request))
    body = ok({"ready": database["status"] == "healthy", "checks": {"database": database}})
    if database["status"] != "healthy":
        return JSONResponse(Envelope[Readiness].model_validate(body).model_dump(mode="json"), status_code=503)
    return body


@router.get("/database", response_model=Envelope[dict[str, Any]], responses=_UNHEALTHY)
async def database(request: Request, _: CurrentPrincipal) -> object:
    report = await health_service.database_report(_settings(request))
    body = ok(report)
    return body if report["status"] == "healthy" else JSONResponse(body, status_code=503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition",
        }
    },
)
def metrics(request: Request, _: CurrentPrincipal) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/cache", response_model=Envelope[CacheHealth])
async def cache(request: Request, _: CurrentPrincipal) -> object:
    """The API's only shared cache is the rate-limit store; Redis is reported as not configured
    unless AETL_REDIS_URL (or a redis:// rate-limit storage) is set."""
    settings = _settings(request)
    report = await health_service.timed(
        lambda: health_service.check_redis(settings), settings.health_check_timeout_seconds
    )
    storage_scheme = (settings.rate_limit_storage or "memory://").split("://", 1)[0]
    backend = "redis" if report["status"] != health_service.NOT_CONFIGURED else "memory"
    return ok({**report, "backend": backend, "rate_limit_storage": storage_scheme})


@router.get("/system", response_model=Envelope[SystemHealth])
def system(request: Request, _: CurrentPrincipal) -> object:
    return ok(health_service.system_report(_settings(request)))
