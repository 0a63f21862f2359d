"""Webhook bodies. The signing secret is shown once (on create and on rotation), never again."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from api.core.schemas import RequestModel, ResponseModel, UTCDateTime
from api.webhooks.delivery import SUBSCRIBABLE_EVENTS

Event = Literal[
    "pipeline.started",
    "pipeline.completed",
    "pipeline.failed",
    "connector.created",
    "alert.triggered",
    "alert.resolved",
]


def _unique_events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("subscribe to at least one event")
    return sorted(set(value), key=SUBSCRIBABLE_EVENTS.index)


class WebhookCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=8, max_length=2048)
    events: list[Event] = Field(
        min_length=1,
        max_length=len(SUBSCRIBABLE_EVENTS) * 2,
        description=(
            "pipeline.started/completed/failed: every run of any code location (Dagster run-status "
            "sensors). connector.created: after POST /connectors (no configuration in the payload). "
            "alert.triggered: a pipeline's runs failed AETL_ALERT_CONSECUTIVE_FAILURES times in a row "
            "(default 3; a job's, for runs without a pipeline); alert.resolved: its next successful run. "
            "Both alert events carry the same alert_id."
        ),
    )
    is_active: bool = True

    _events = field_validator("events")(_unique_events)


class WebhookUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    url: str | None = Field(None, min_length=8, max_length=2048)
    events: list[Event] | None = Field(None, max_length=len(SUBSCRIBABLE_EVENTS) * 2)
    is_active: bool | None = None
    # a new signing secret, shown once in the answer
    rotate_secret: bool = False

    _events = field_validator("events")(_unique_events)


class WebhookPublic(ResponseModel):
    id: str
    name: str
    url: str
    events: list[str]
    is_active: bool
    owner_id: str | None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class WebhookWithSecret(WebhookPublic):
    secret: str


class WebhookDeliveryPublic(ResponseModel):
    id: str
    webhook_id: str
    event: str
    status: str
    attempts: int
    response_status: int | None
    latency_ms: float | None
    error: str | None
    attempt_log: list[dict[str, Any]]
    payload: dict[str, Any]
    created_at: UTCDateTime
    delivered_at: UTCDateTime | None


class DeliveryPage(ResponseModel):
    items: list[WebhookDeliveryPublic]
    total: int
    skip: int
    limit: int
