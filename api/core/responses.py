"""OpenAPI error responses shared by every domain router (the error shape for each failure status)."""

from __future__ import annotations

from typing import Any

from api.core.schemas import ErrorResponse

Responses = dict[int | str, dict[str, Any]]
_ERROR: dict[str, Any] = {"model": ErrorResponse}
ERROR_RESPONSES: Responses = {
    401: {**_ERROR, "description": "Not authenticated, invalid or expired token"},
    403: {**_ERROR, "description": "Insufficient permissions or inactive account"},
    422: {**_ERROR, "description": "Validation error"},
    429: {**_ERROR, "description": "Rate limit exceeded"},
    500: {**_ERROR, "description": "Internal error"},
}
NOT_FOUND: Responses = {404: {**_ERROR, "description": "Not found"}}
CONFLICT: Responses = {409: {**_ERROR, "description": "Already exists"}}
BAD_REQUEST: Responses = {400: {**_ERROR, "description": "Bad request"}}
