"""Compatibility: shared schema pieces moved to api.core.schemas."""

from api.core.schemas import (
    Envelope,
    ErrorDetail,
    ErrorItem,
    ErrorResponse,
    MessageEnvelope,
    RequestModel,
    ResponseModel,
    UTCDateTime,
    iso_utc,
    ok,
)

__all__ = [
    "Envelope", "ErrorDetail", "ErrorItem", "ErrorResponse", "MessageEnvelope",
    "RequestModel", "ResponseModel", "UTCDateTime", "iso_utc", "ok",
]  # fmt: skip
