"""The one outer ASGI middleware: request id, body-size limit, rate limit, access log, metrics.

Pure ASGI (not BaseHTTPMiddleware) so streaming bodies are counted as they arrive and an
unexpected exception is answered here in the error shape instead of by Starlette's plain 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi.routing import iter_route_contexts
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core import security
from api.core.config import Settings
from api.core.context import accept_request_id, reset_request_id, set_request_id
from api.core.errors import PayloadTooLarge, RateLimitExceeded, app_error_response, render_exception
from api.core.response_cache import SAFE_METHODS, CachedAnswer, ResponseCache

access_log = logging.getLogger("api.access")
logger = logging.getLogger("api.middleware")

# never counted against a limit: liveness probes (they call nothing) and the docs; they still carry
# the headers. Health checks that call other services spend the caller's budget like any route.
UNLIMITED_PATHS = frozenset(
    {"/health", "/health/live", "/api/v1/health/live", "/docs", "/redoc", "/openapi.json"}
)
UNLIMITED_PREFIXES = ("/docs/", "/static-offline-docs/")
GENERATION_TAG, ADMIN_TAG = "generation", "admin"


class Metrics:
    """Prometheus metrics of one app instance (own registry: several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aetl_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "aetl_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.cache_hits = Counter(
            "aetl_http_response_cache_hits_total",
            "GET requests answered from the response cache (api/core/response_cache.py)",
            ["route"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "aetl_http_rate_limited_total",
            "Requests refused by the rate limiter",
            ["tier"],
            registry=self.registry,
        )


@dataclass(frozen=True)
class RateDecision:
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the window frees up
    allowed: bool
    tier: str

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.reset_at - time.time())))
        return out


class RateLimiter:
    """Per-identity fixed windows of one minute; storage from settings (memory or redis)."""

    def __init__(self, settings: Settings) -> None:
        uri = settings.rate_limit_storage or "memory://"
        self.enabled = settings.rate_limit_enabled
        self.storage = storage_from_string(uri if uri.startswith("async+") else f"async+{uri}")
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.tiers = {
            "anonymous": RateLimitItemPerMinute(settings.rate_limit_anonymous),
            "user": RateLimitItemPerMinute(settings.rate_limit_default),
            "admin": RateLimitItemPerMinute(settings.rate_limit_admin),
            "generation": RateLimitItemPerMinute(settings.rate_limit_generation),
        }

    async def decide(self, tier: str, identity: str, *, count: bool) -> RateDecision:
        item = self.tiers[tier]
        allowed = True
        if count and self.enabled:
            allowed = await self.strategy.hit(item, tier, identity)
        stats = await self.strategy.get_window_stats(item, tier, identity)
        return RateDecision(item.amount, stats.remaining, stats.reset_time, allowed, tier)


class VerifiedApiKeys:
    """Hashes of API keys the auth layer has accepted -> (user id, role), most recent first.

    The rate limiter runs before the database is asked who a key belongs to; a key counts as an
    identity of its own only once it has been verified, so a random key is just its address.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def remember(self, key_hash: str, user_id: str, role: str) -> None:
        self._known[key_hash] = (user_id, role)
        self._known.move_to_end(key_hash)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def owner(self, key_hash: str) -> tuple[str, str] | None:
        return self._known.get(key_hash)


def caller_identity(
    headers: Headers, client: tuple[str, int] | None, verified_keys: VerifiedApiKeys
) -> tuple[str, str | None]:
    """(identity, role) of a verified credential (signed token, known key), else the address."""
    api_key = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if api_key or security.looks_like_api_key(bearer):
        owner = verified_keys.owner(security.hash_api_key(api_key or bearer))
        if owner:
            return f"user:{owner[0]}", owner[1]
    elif bearer:
        claims = security.peek_access_claims(bearer)
        if claims:
            return f"user:{claims['sub']}", claims.get("role")
    return f"ip:{client[0] if client else 'unknown'}", None


def rate_tier(tags: frozenset[str], identity: str, role: str | None) -> str:
    """Which budget a request spends: generation routes (tag) < per user < admin; anonymous per IP."""
    if GENERATION_TAG in tags:
        return "generation"
    if ADMIN_TAG in tags or role == "admin":
        return "admin"
    return "anonymous" if identity.startswith("ip:") else "user"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        limiter: RateLimiter,
        metrics: Metrics,
        routes: Callable[[], list[RouteInfo]],
        verified_keys: VerifiedApiKeys,
        cache: ResponseCache | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.metrics = metrics
        self.routes = routes
        self.verified_keys = verified_keys
        self.cache = cache or ResponseCache(settings.response_cache_seconds)
        self._route_info = lru_cache(maxsize=4096)(self._match_route)

    def _match_route(self, method: str, path: str) -> tuple[str, frozenset[str]]:
        """(route template for metrics/logs, tags) of the route a request goes to."""
        partial: tuple[str, frozenset[str]] | None = None
        for route in self.routes():
            if not route.regex.match(path):
                continue
            info = (route.path, route.tags)
            if (
                route.methods is None
                or method in route.methods
                or (method == "HEAD" and "GET" in route.methods)
            ):
                return info
            if partial is None:
                partial = info
        return partial or ("<unmatched>", frozenset())

    async def _rate_decision(
        self, scope: Scope, identity: str, role: str | None, tags: frozenset[str]
    ) -> RateDecision:
        tier = rate_tier(tags, identity, role)
        path = scope["path"]
        count = path not in UNLIMITED_PATHS and not path.startswith(UNLIMITED_PREFIXES)
        return await self.limiter.decide(tier, identity, count=count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accept_request_id(headers.get("x-request-id"))
        token = set_request_id(request_id)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route, tags = self._route_info(method, path)
        status = {"code": 500, "sent": False}
        extra: dict[str, str] = {"X-Request-ID": request_id}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                response_headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    response_headers[name] = value
            await send(message)

        identity, role = caller_identity(headers, scope.get("client"), self.verified_keys)
        cache = self.cache
        # a request that may write drops the cached answers when it reaches the app and when it ends;
        # one refused before (rate limit, body too large) changed nothing, so it drops nothing: spam
        # beyond the limit cannot keep emptying the cache
        writes = False
        try:
            try:
                decision = await self._rate_decision(scope, identity, role, tags)
            except Exception:  # a broken limiter backend must not take the API down
                logger.warning("rate limiter unavailable request_id=%s", request_id)
                decision = None
            if decision is not None:
                extra.update(decision.headers())
                if not decision.allowed:
                    self.metrics.rate_limited.labels(decision.tier).inc()
                    exc = RateLimitExceeded(
                        f"Rate limit exceeded: {decision.limit} requests per minute",
                        details={"limit": decision.limit, "window_seconds": 60, "tier": decision.tier},
                    )
                    await app_error_response(exc)(scope, receive, send_with_headers)
                    return
            body_receive = await self._limited_body(scope, headers, receive, send_with_headers)
            if body_receive is None:
                return
            if method not in SAFE_METHODS:
                writes = True
                cache.written()
            if cache.applies(method, route, identity):
                await self._cached(scope, body_receive, send_with_headers, identity, route)
            else:
                await self.app(scope, body_receive, send_with_headers)
        except Exception as exc:
            if status["sent"]:
                logger.error("error after response started request_id=%s: %s", request_id, type(exc).__name__)
            else:
                await render_exception(exc)(scope, receive, send_with_headers)
        finally:
            if writes:
                cache.written()
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(method, route, str(status["code"])).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            access_log.info(
                "%s %s %s %.1fms request_id=%s user=%s",
                method,
                path,
                status["code"],
                elapsed * 1000,
                request_id,
                state.get("user_id", "-"),
            )
            reset_request_id(token)

    async def _cached(self, scope: Scope, receive: Receive, send: Send, identity: str, route: str) -> None:
        """Answer from the response cache, or run the app and keep its answer (see response_cache)."""
        cache = self.cache
        # the credential itself is in the key, not only its user: an API key may be scoped narrower
        # than its owner's session (e.g. `connectors:view`), and must never get the session's answer
        credential = hashlib.blake2b(digest_size=16)
        wants_fresh = False
        for name, value in scope["headers"]:
            if name in (b"authorization", b"x-api-key"):
                credential.update(name + b"\0" + value + b"\0")
            elif name == b"cache-control":
                # `no-cache` (or no-store) asks for a fresh answer, as in HTTP caches
                wants_fresh = wants_fresh or b"no-cache" in value.lower() or b"no-store" in value.lower()
        key = (identity, credential.hexdigest(), scope["path"], scope.get("query_string", b""))
        state: MutableMapping[str, Any] = scope["state"]
        hit, fresh = (None, False) if wants_fresh else cache.lookup(key)
        if not fresh:
            pending = None if wants_fresh else cache.pending(key)
            if pending is None:
                hit = None  # compute it (below); an expired answer goes only to those who come meanwhile
            elif hit is None:
                hit = await asyncio.shield(pending)  # the same request is being answered right now
        if hit is not None:
            self.metrics.cache_hits.labels(route).inc()
            state["user_id"] = hit.user_id
            await send({"type": "http.response.start", "status": hit.status, "headers": list(hit.headers)})
            await send({"type": "http.response.body", "body": hit.body})
            return
        generation = cache.generation
        leading = None if wants_fresh else cache.lead(key)
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(status=message["status"], headers=tuple(message.get("headers", ())))
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            await send(message)

        answer = None
        try:
            await self.app(scope, receive, capture)
            if start:
                ttl = state.get("cache_seconds")  # the answer's own, shorter life (see response_cache)
                answer = CachedAnswer(
                    start["status"],
                    start["headers"],
                    b"".join(body),
                    state.get("user_id"),
                    cache.now(),
                    None if ttl is None else float(ttl),
                )
                if not cache.put(key, generation, answer):
                    answer = None  # a write came in between: nobody else gets it
        finally:
            if leading is not None:
                cache.finish(key, leading, answer)

    async def _limited_body(
        self, scope: Scope, headers: Headers, receive: Receive, send: Send
    ) -> Receive | None:
        """A receive that never yields more than max_body_bytes, or None after answering 413.

        A declared Content-Length is checked up front; a chunked body is read (up to the limit)
        before the app sees it, so the app never parses a body that will be refused.
        """
        limit = self.settings.max_body_bytes
        too_large = PayloadTooLarge(f"Request body exceeds {limit} bytes", details={"max_body_bytes": limit})
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await app_error_response(too_large)(scope, receive, send)
                return None
            return receive
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await app_error_response(too_large)(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


@dataclass(frozen=True)
class RouteInfo:
    path: str  # the template, e.g. /api/v1/users/{user_id}: one metrics label per route
    tags: frozenset[str]
    methods: frozenset[str] | None
    regex: re.Pattern[str]


def route_list(app: Any) -> Callable[[], list[RouteInfo]]:
    """Every route with its full path and tags (included routers flattened), built on first use."""
    cache: list[RouteInfo] = []

    def routes() -> list[RouteInfo]:
        if not cache:
            for route in iter_route_contexts(app.router.routes):
                path = route.path
                if not path:
                    continue
                regex, _, _ = compile_path(path)
                methods = route.methods
                tags = frozenset(getattr(route, "tags", None) or ())
                cache.append(RouteInfo(path, tags, frozenset(methods) if methods else None, regex))
        return cache

    return routes
