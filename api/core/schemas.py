"""Shared schema pieces: UTC timestamps with Z, the aggregator envelope, the error shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer


def iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


UTCDateTime = Annotated[datetime, PlainSerializer(iso_utc, return_type=str, when_used="json")]

T = TypeVar("T")


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are a client bug, answered with 422."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Envelope(BaseModel, Generic[T]):
    """The aggregator spec's success envelope."""

    status: Literal["success"] = "success"
    data: T
    message: str | None = None


class MessageEnvelope(BaseModel):
    status: Literal["success"] = "success"
    message: str
    data: dict[str, Any] | None = None


class ErrorItem(BaseModel):
    code: str
    field: str | None = None
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}
    request_id: str | None = None


class ErrorResponse(BaseModel):
    status: Literal["error"] = "error"
    message: str
    errors: list[ErrorItem]
    error: ErrorDetail


def ok(data: Any, message: str | None = None) -> dict[str, Any]:
    return {"status": "success", "data": data, "message": message}
