"""One module per resource; every router documents the error shape for its failure statuses."""

from __future__ import annotations

from typing import Any

from api.schemas.common import ErrorResponse

_ERROR = {"model": ErrorResponse}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "Not authenticated, invalid or expired token"},
    403: {**_ERROR, "description": "Insufficient permissions or inactive account"},
    422: {**_ERROR, "description": "Validation error"},
    429: {**_ERROR, "description": "Rate limit exceeded"},
    500: {**_ERROR, "description": "Internal error"},
}
NOT_FOUND = {404: {**_ERROR, "description": "Not found"}}
CONFLICT = {409: {**_ERROR, "description": "Already exists"}}
BAD_REQUEST = {400: {**_ERROR, "description": "Bad request"}}
