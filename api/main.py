"""The API application factory: `uvicorn api.main:create_app --factory`."""

from __future__ import annotations

import atexit
import gc
import logging
import logging.handlers
import queue
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import PlatformCollector, ProcessCollector
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.admin.router import router as admin_router
from api.auth.router import router as auth_router
from api.connectors import router as connectors_router
from api.core.config import Settings, get_settings
from api.core.errors import install_error_handlers
from api.core.gc_pauses import GcPauseCollector
from api.core.middleware import (
    Metrics,
    RateLimiter,
    RequestContextMiddleware,
    VerifiedApiKeys,
    route_list,
)
from api.datamarts.router import download_router as export_download_router
from api.datamarts.router import export_router as datamarts_export_router
from api.datamarts.router import router as datamarts_router
from api.db.session import get_engine
from api.health.router import root_router as health_root_router
from api.health.router import router as health_router
from api.health.service import DagsterProbe, dagster_probe
from api.pipelines import live as pipelines_live
from api.pipelines import router as pipelines
from api.preferences.router import dashboards_router, preferences_router
from api.projects.router import router as projects_router
from api.roles.router import router as roles_router
from api.schema import router as schema_router
from api.storage.router import router as storage_router
from api.users.router import router as users_router
from api.webhooks.router import router as webhooks_router

API_PREFIX = "/api/v1"


def _configure_logging(settings: Settings) -> None:
    # uvicorn configures its own loggers; ours only need a level and one handler. The event loop only
    # puts records on a queue; a thread writes them: a write to stderr (a file, a pipe) that blocks,
    # e.g. while the disk flushes, would otherwise stall every request in flight (one access-log
    # line per request; stalls of ~400 ms seen under load)
    root = logging.getLogger("api")
    root.setLevel(settings.log_level.upper())
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(records, handler, respect_handler_level=True)
        listener.start()
        atexit.register(listener.stop)  # what is queued is written before the process ends
        root.addHandler(logging.handlers.QueueHandler(records))
        root.propagate = False


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # one HTTP client for health checks: building one per request costs ~50 ms of TLS set-up
    # on the event loop, which every concurrent check would then wait for
    app.state.http = httpx.AsyncClient()
    # what start-up built (modules, routes, models: ~350k objects) lives as long as the process: keep
    # it out of the collector's reach. A full collection over it took ~190 ms here, a pause every
    # request in flight waited out (the p99 of every route under load)
    gc.collect()
    gc.freeze()
    # what is left to collect is small, but a full collection still walks every unfrozen object that
    # lived long enough (~20 ms here): one per 100 young-generation passes instead of one per 10
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
    yield
    await app.state.http.aclose()
    probe = getattr(app.state, "dagster_probe", None)
    if probe is not None and hasattr(probe, "close"):
        probe.close()
    get_engine().dispose()


def create_app(*, dagster_probe_factory: Callable[[Settings], DagsterProbe] = dagster_probe) -> FastAPI:
    """A new app over the process's one settings object (other limits = another process/env)."""
    settings = get_settings()
    _configure_logging(settings)
    # FastAPIOffline: /docs and /redoc load their scripts from the app itself, never from a CDN
    app = FastAPIOffline(
        title="AI-ETL Platform API",
        version=settings.version,
        description=(
            "Pipelines, connectors, datamarts and watched folders on Dagster and ClickHouse. "
            "Errors always use one shape: `{status, message, errors[], error{code, message, details, "
            "request_id}}`; every response carries `X-Request-ID` and `X-RateLimit-*` headers."
        ),
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
        lifespan=_lifespan,
    )
    metrics = Metrics()
    ProcessCollector(registry=metrics.registry)
    PlatformCollector(registry=metrics.registry)
    metrics.registry.register(GcPauseCollector())
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.dagster_probe_factory = dagster_probe_factory
    app.state.dagster_probe = None
    app.state.rate_limiter = RateLimiter(settings)
    app.state.verified_api_keys = VerifiedApiKeys()

    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        settings=settings,
        limiter=app.state.rate_limiter,
        metrics=metrics,
        routes=route_list(app),
        verified_keys=app.state.verified_api_keys,
    )
    if settings.trusted_proxies:
        # outermost: the client address is settled before limits, logs and the activity log see it
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)

    api = APIRouter(prefix=API_PREFIX)
    for domain_router in (
        auth_router,
        users_router,
        roles_router,
        health_router,
        pipelines.router,
        pipelines.versions,
        pipelines_live.api_router,
        connectors_router.router,
        schema_router.router,
        preferences_router,
        dashboards_router,
        projects_router,
        admin_router,
        webhooks_router,
        datamarts_router,
        datamarts_export_router,
        export_download_router,
        storage_router,
    ):
        api.include_router(domain_router)
    app.include_router(health_root_router)
    app.include_router(pipelines_live.root_router)
    app.include_router(api)
    return app
