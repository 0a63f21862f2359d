"""Health of the parts the API depends on, checked concurrently with short timeouts.

Each check answers ``{"status": "healthy"|"unhealthy"|"not_configured", "latency_ms", ...}``;
the overall status is unhealthy when any configured component is.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import psutil  # type: ignore[import-untyped]
from sqlalchemy import text

from api.core.config import Settings
from api.db.session import get_engine

HEALTHY, UNHEALTHY, NOT_CONFIGURED = "healthy", "unhealthy", "not_configured"
STARTED_AT = time.time()

Check = Callable[[], Awaitable[dict[str, Any]]]


class DagsterProbe(Protocol):
    """The two calls health needs from api.dagster_client.DagsterClient (sync or async)."""

    def ping(self) -> Any: ...

    def daemon_health(self) -> Any: ...


def dagster_probe(settings: Settings) -> DagsterProbe:
    from api.dagster_client import DagsterClient  # the one GraphQL client of the API

    return DagsterClient(settings.dagster_url, timeout=settings.health_check_timeout_seconds)


async def _call(fn: Callable[[], Any]) -> Any:
    result = await asyncio.to_thread(fn) if not inspect.iscoroutinefunction(fn) else await fn()
    if inspect.isawaitable(result):
        result = await result
    return result


async def timed(check: Callable[[], Awaitable[dict[str, Any]]], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = await asyncio.wait_for(check(), timeout=timeout)
        status = extra.pop("status", HEALTHY)
    except TimeoutError:
        status, extra = UNHEALTHY, {"error": f"timed out after {timeout:g}s"}
    except Exception as exc:  # a health report names the failure kind, never its (secret-bearing) text
        status, extra = UNHEALTHY, {"error": type(exc).__name__}
    return {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 1), **extra}


def _database_check() -> dict[str, Any]:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return {"type": "postgresql", "migration": revision}


async def check_database(settings: Settings) -> dict[str, Any]:
    return await asyncio.to_thread(_database_check)


async def check_clickhouse(settings: Settings, http: httpx.AsyncClient) -> dict[str, Any]:
    # a query as the platform's user, not /ping: a wrong password must show here, not in a run
    credentials = settings.warehouse_credentials()
    auth = (credentials[0], credentials[1].get_secret_value()) if credentials else None
    response = await http.get(
        f"{settings.clickhouse_url}/",
        params={"query": "SELECT 1"},
        auth=auth,
        timeout=settings.health_check_timeout_seconds,
    )
    if response.status_code != 200 or response.text.strip() != "1":
        return {"status": UNHEALTHY, "error": f"HTTP {response.status_code}"}
    return {"type": "embedded" if settings.embedded_warehouse else "clickhouse"}


async def check_dagster(settings: Settings, probe: DagsterProbe) -> dict[str, Any]:
    result = await _call(probe.ping)
    version = getattr(result, "version", result if isinstance(result, str) else None)
    return {"version": version} if version else {}


async def check_dagster_daemon(settings: Settings, probe: DagsterProbe) -> dict[str, Any]:
    result = await _call(probe.daemon_health)
    healthy = getattr(result, "healthy", None)
    if healthy is None and isinstance(result, dict):
        healthy = result.get("healthy")
    out: dict[str, Any] = {}
    statuses = getattr(result, "daemons", None) or getattr(result, "statuses", None)
    if statuses:
        out["daemons"] = {
            str(getattr(d, "daemon_type", "?")): bool(getattr(d, "healthy", False))
            for d in statuses
            if getattr(d, "required", True)
        }
    out["status"] = HEALTHY if healthy else UNHEALTHY
    return out


async def check_redis(settings: Settings) -> dict[str, Any]:
    url = settings.redis_url or (
        settings.rate_limit_storage if "redis" in settings.rate_limit_storage else None
    )
    if not url:
        return {"status": NOT_CONFIGURED, "detail": "no Redis configured; rate limits kept in process memory"}
    target = httpx.URL(url.removeprefix("async+"))
    reader, writer = await asyncio.open_connection(target.host or "127.0.0.1", target.port or 6379)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    # NOAUTH still proves the server is up and speaking Redis
    if line.startswith((b"+PONG", b"-NOAUTH")):
        return {}
    return {"status": UNHEALTHY, "error": "unexpected reply"}


def overall(components: dict[str, dict[str, Any]]) -> str:
    return UNHEALTHY if any(c["status"] == UNHEALTHY for c in components.values()) else HEALTHY


async def detailed_report(
    settings: Settings, probe: DagsterProbe | None, http: httpx.AsyncClient
) -> dict[str, Any]:
    timeout = settings.health_check_timeout_seconds

    async def no_probe() -> dict[str, Any]:
        return {"status": UNHEALTHY, "error": "dagster client unavailable"}

    checks: dict[str, Check] = {
        "database": lambda: check_database(settings),
        "clickhouse": lambda: check_clickhouse(settings, http),
        "dagster": (lambda: check_dagster(settings, probe)) if probe else no_probe,
        "dagster_daemon": (lambda: check_dagster_daemon(settings, probe)) if probe else no_probe,
        "redis": lambda: check_redis(settings),
    }
    results = await asyncio.gather(*(timed(c, timeout) for c in checks.values()))
    components = dict(zip(checks, results, strict=True))
    return {
        "status": overall(components),
        "components": components,
        "version": settings.version,
        "timestamp": datetime.now(UTC),
    }


async def database_report(settings: Settings) -> dict[str, Any]:
    result = await timed(lambda: check_database(settings), settings.health_check_timeout_seconds)
    return result


def system_report(settings: Settings) -> dict[str, Any]:
    """Real numbers from the host and this process (psutil)."""
    vm = psutil.virtual_memory()
    data_dir = settings.data_dir if settings.data_dir.exists() else settings.data_dir.parent
    disk = psutil.disk_usage(str(data_dir))
    proc = psutil.Process(os.getpid())
    load1, load5, load15 = os.getloadavg()
    cpu_count = psutil.cpu_count() or 1
    status = HEALTHY
    if vm.percent > 95 or disk.percent > 95:
        status = UNHEALTHY
    return {
        "status": status,
        "cpu": {
            "count": cpu_count,
            "load_1m": load1,
            "load_5m": load5,
            "load_15m": load15,
            "percent": psutil.cpu_percent(interval=None),
        },
        "memory": {"total_bytes": vm.total, "available_bytes": vm.available, "percent": vm.percent},
        "disk": {
            "path": str(data_dir),
            "total_bytes": disk.total,
            "free_bytes": disk.free,
            "percent": disk.percent,
        },
        "process": {
            "pid": proc.pid,
            "rss_bytes": proc.memory_info().rss,
            "threads": proc.num_threads(),
            "uptime_seconds": round(time.time() - STARTED_AT, 1),
        },
    }
