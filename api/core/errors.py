"""The one error hierarchy of the API and the one place that turns any failure into the error shape.

Shape (API_CONTRACT.md): ``{"status":"error","message","errors":[{"code","field","message"}],
"error":{"code","message","details","request_id"}}`` — ``error.code`` is the ai-etl code,
``errors[].code`` the aggregator code. Nothing here ever puts a traceback, SQL or a credential
into a body or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.core.context import get_request_id

logger = logging.getLogger("api.errors")

# ai-etl code -> aggregator code, for errors that arrive with only one of them (dagster client)
AGGREGATOR_CODES: dict[str, str] = {
    "AUTH_FAILED": "AUTH_001",
    "INVALID_TOKEN": "AUTH_001",
    "TOKEN_EXPIRED": "AUTH_002",
    "PERMISSION_DENIED": "AUTH_003",
    "VALIDATION_ERROR": "VAL_001",
    "RESOURCE_NOT_FOUND": "RES_001",
    "DUPLICATE_RESOURCE": "RES_002",
    "RATE_LIMIT_EXCEEDED": "RATE_001",
    "CONNECTOR_ERROR": "CONN_001",
    "PIPELINE_EXECUTION_ERROR": "SYS_001",
    "LLM_GENERATION_ERROR": "SYS_001",
    "DATABASE_ERROR": "DB_001",
    "SERVICE_UNAVAILABLE": "CONN_001",
    "INTERNAL_ERROR": "SYS_001",
}


class AppError(Exception):
    """Base of every error the API raises on purpose; subclasses fix status and codes."""

    status_code: int = 500
    code: str = "INTERNAL_ERROR"
    aggregator_code: str = "SYS_001"
    default_message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = dict(details or {})
        self.field = field
        self.headers = dict(headers or {})
        super().__init__(self.message)


class AuthFailed(AppError):
    status_code, code, aggregator_code = 401, "AUTH_FAILED", "AUTH_001"
    default_message = "Authentication failed"


class InvalidToken(AppError):
    status_code, code, aggregator_code = 401, "INVALID_TOKEN", "AUTH_001"
    default_message = "Invalid or revoked token"


class TokenExpired(AppError):
    status_code, code, aggregator_code = 401, "TOKEN_EXPIRED", "AUTH_002"
    default_message = "Token expired"


class PermissionDenied(AppError):
    status_code, code, aggregator_code = 403, "PERMISSION_DENIED", "AUTH_003"
    default_message = "Insufficient permissions"


class AccountInactive(PermissionDenied):
    default_message = "Account is inactive"


class BadRequest(AppError):
    status_code, code, aggregator_code = 400, "VALIDATION_ERROR", "VAL_001"
    default_message = "Bad request"


class ValidationFailed(AppError):
    status_code, code, aggregator_code = 422, "VALIDATION_ERROR", "VAL_001"
    default_message = "Validation error"


class NotFound(AppError):
    status_code, code, aggregator_code = 404, "RESOURCE_NOT_FOUND", "RES_001"
    default_message = "Resource not found"


class Conflict(AppError):
    status_code, code, aggregator_code = 409, "DUPLICATE_RESOURCE", "RES_002"
    default_message = "Resource already exists"


class Gone(AppError):
    """A resource that existed and will not come back (an expired download link)."""

    status_code, code, aggregator_code = 410, "RESOURCE_NOT_FOUND", "RES_001"
    default_message = "Resource is gone"


class PayloadTooLarge(AppError):
    status_code, code, aggregator_code = 413, "VALIDATION_ERROR", "VAL_001"
    default_message = "Request body too large"


class RateLimitExceeded(AppError):
    status_code, code, aggregator_code = 429, "RATE_LIMIT_EXCEEDED", "RATE_001"
    default_message = "Rate limit exceeded"


class DatabaseError(AppError):
    status_code, code, aggregator_code = 503, "DATABASE_ERROR", "DB_001"
    default_message = "Database unavailable"


class ConnectorError(AppError):
    status_code, code, aggregator_code = 502, "CONNECTOR_ERROR", "CONN_001"
    default_message = "Connector error"


class PipelineExecutionError(AppError):
    status_code, code, aggregator_code = 500, "PIPELINE_EXECUTION_ERROR", "SYS_001"
    default_message = "Pipeline execution error"


class LLMGenerationError(AppError):
    status_code, code, aggregator_code = 502, "LLM_GENERATION_ERROR", "SYS_001"
    default_message = "LLM generation error"


class ServiceUnavailable(AppError):
    status_code, code, aggregator_code = 503, "SERVICE_UNAVAILABLE", "CONN_001"
    default_message = "Service unavailable"


def error_body(
    *,
    code: str,
    message: str,
    aggregator_code: str | None = None,
    details: Mapping[str, Any] | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    field: str | None = None,
) -> dict[str, Any]:
    agg = aggregator_code or AGGREGATOR_CODES.get(code, "SYS_001")
    return {
        "status": "error",
        "message": message,
        "errors": list(errors) if errors else [{"code": agg, "field": field, "message": message}],
        "error": {
            "code": code,
            "message": message,
            "details": dict(details or {}),
            "request_id": get_request_id(),
        },
    }


def error_response(
    status_code: int,
    *,
    code: str,
    message: str,
    aggregator_code: str | None = None,
    details: Mapping[str, Any] | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(
        code=code,
        message=message,
        aggregator_code=aggregator_code,
        details=details,
        errors=errors,
        field=field,
    )
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def app_error_response(exc: AppError) -> JSONResponse:
    return error_response(
        exc.status_code,
        code=exc.code,
        message=exc.message,
        aggregator_code=exc.aggregator_code,
        details=exc.details,
        field=exc.field,
        headers=exc.headers,
    )


def is_client_error_like(exc: BaseException) -> bool:
    """Errors from other packages (api.dagster_client) that carry our attributes, duck-typed."""
    return all(hasattr(exc, a) for a in ("http_status", "error_code", "message")) and isinstance(
        getattr(exc, "http_status", None), int
    )


def client_error_response(exc: BaseException) -> JSONResponse:
    status = int(getattr(exc, "http_status", 500))
    code = str(getattr(exc, "error_code", "INTERNAL_ERROR"))
    message = str(getattr(exc, "message", "")) or "Upstream error"
    details = getattr(exc, "details", None)
    safe_details = details if isinstance(details, Mapping) else {}
    if status >= 500:
        logger.warning("upstream error code=%s status=%s", code, status)
    aggregator = getattr(exc, "aggregator_code", None)
    return error_response(
        status if 400 <= status <= 599 else 500,
        code=code,
        message=message,
        aggregator_code=aggregator if isinstance(aggregator, str) else None,
        details=safe_details,
    )


def _field_of(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or None


def _validation_message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "Invalid value"))
    # pydantic's "Value error, ..." prefix is noise to an API client
    return msg.removeprefix("Value error, ")


def validation_response(exc: RequestValidationError) -> JSONResponse:
    raw = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        return error_response(
            422, code="VALIDATION_ERROR", message="Malformed JSON body", details={"reason": "json_invalid"}
        )
    items = [
        {"code": "VAL_001", "field": _field_of(e.get("loc", ())), "message": _validation_message(e)}
        for e in raw
    ]
    # the echoed input can be huge or secret (a password): report location and reason only
    fields = [
        {"field": i["field"], "reason": i["message"], "type": e.get("type")}
        for i, e in zip(items, raw, strict=True)
    ]
    field, reason = (items[0]["field"], items[0]["message"]) if items else (None, "Validation error")
    message = f"Invalid value for '{field}': {reason}" if field else str(reason)
    return error_response(
        422, code="VALIDATION_ERROR", message=message, errors=items, details={"errors": fields}
    )


_HTTP_CODES = {
    400: ("VALIDATION_ERROR", "Bad request"),
    401: ("AUTH_FAILED", "Authentication required"),
    403: ("PERMISSION_DENIED", "Insufficient permissions"),
    404: ("RESOURCE_NOT_FOUND", "Not found"),
    405: ("VALIDATION_ERROR", "Method not allowed"),
    409: ("DUPLICATE_RESOURCE", "Conflict"),
    413: ("VALIDATION_ERROR", "Request body too large"),
    415: ("VALIDATION_ERROR", "Unsupported media type"),
    429: ("RATE_LIMIT_EXCEEDED", "Rate limit exceeded"),
}


def http_exception_response(exc: StarletteHTTPException) -> JSONResponse:
    code, default = _HTTP_CODES.get(exc.status_code, ("INTERNAL_ERROR", "Error"))
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else default
    if exc.status_code == 404 and message == "Not Found":
        message = "Not found"
    if exc.status_code == 400 and "parsing the body" in message:
        message = "Malformed request body"
    return error_response(exc.status_code, code=code, message=message, headers=exc.headers)


def unexpected_error_response(exc: BaseException) -> JSONResponse:
    """Last resort: log the type and where it happened (no values, no traceback) and answer 500."""
    tb = exc.__traceback__
    where = ""
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
    hint = ""
    if isinstance(exc, ResponseValidationError):
        # a bug in our response shaping: where and what kind, never the values
        hint = " " + ";".join(
            f"{'.'.join(map(str, e.get('loc', ())))}:{e.get('type')}" for e in exc.errors()[:5]
        )
    logger.error(
        "unhandled %s.%s at %s request_id=%s%s",
        type(exc).__module__,
        type(exc).__qualname__,
        where,
        get_request_id(),
        hint,
    )
    return error_response(500, code="INTERNAL_ERROR", message="Internal server error")


def render_exception(exc: BaseException) -> JSONResponse:
    """The one mapping from any exception to the error shape."""
    if isinstance(exc, AppError):
        return app_error_response(exc)
    if isinstance(exc, RequestValidationError):
        return validation_response(exc)
    if isinstance(exc, StarletteHTTPException):
        return http_exception_response(exc)
    if isinstance(exc, json.JSONDecodeError):
        return error_response(422, code="VALIDATION_ERROR", message="Malformed JSON body")
    if is_client_error_like(exc):
        return client_error_response(exc)
    if isinstance(exc, IntegrityError):
        # a constraint caught what the service's own check could not see (a race)
        if getattr(exc.orig, "sqlstate", None) == "23505":
            return error_response(409, code="DUPLICATE_RESOURCE", message="Resource already exists")
        return error_response(409, code="VALIDATION_ERROR", message="Request conflicts with existing data")
    if isinstance(exc, DataError):
        # a value the request's bounds let through but the database refuses (a NUL byte, a range)
        return error_response(
            422, code="VALIDATION_ERROR", message="A value of the request is not valid for the database"
        )
    if isinstance(exc, OperationalError):
        logger.error("database unavailable request_id=%s", get_request_id())
        return error_response(503, code="DATABASE_ERROR", message="Database unavailable")
    if isinstance(exc, PoolTimeout):
        # every pooled connection is busy: the server is overloaded, the request may be retried
        logger.error("database connection pool exhausted request_id=%s", get_request_id())
        return error_response(
            503, code="DATABASE_ERROR", message="Database busy, retry shortly", headers={"Retry-After": "1"}
        )
    return unexpected_error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return render_exception(exc)

    for exc_type in (AppError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(exc_type, handle)
