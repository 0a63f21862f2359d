"""/api/v1/webhooks (no spec body: aggregator envelope). Deliveries are signed; see delivery.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, status

from api.auth.service import Principal
from api.core.responses import BAD_REQUEST, ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, MessageEnvelope, ok
from api.deps import ClientIP, SessionDep, require_permission
from api.webhooks import service
from api.webhooks.schemas import (
    DeliveryPage,
    WebhookCreate,
    WebhookDeliveryPublic,
    WebhookPublic,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses={**ERROR_RESPONSES, **BAD_REQUEST})

CanView = Annotated[Principal, Depends(require_permission("webhooks", "view"))]
CanCreate = Annotated[Principal, Depends(require_permission("webhooks", "create"))]
CanEdit = Annotated[Principal, Depends(require_permission("webhooks", "edit"))]
CanDelete = Annotated[Principal, Depends(require_permission("webhooks", "delete"))]
WebhookId = Annotated[str, Path(max_length=64)]


def _public(row: object, secret: str | None = None) -> dict[str, object]:
    data = WebhookPublic.model_validate(row).model_dump(mode="json")
    return data | {"secret": secret} if secret else data


@router.get("", response_model=Envelope[list[WebhookPublic]])
def list_webhooks(principal: CanView, session: SessionDep) -> object:
    """The caller's webhooks (administrators: all)."""
    return ok([_public(r) for r in service.list_webhooks(session, principal)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Envelope[WebhookWithSecret])
def create_webhook(body: WebhookCreate, principal: CanCreate, session: SessionDep, ip: ClientIP) -> object:
    """The signing secret is in this answer only: store it to verify `X-AETL-Signature`."""
    row, secret = service.create_webhook(session, principal, body, ip)
    return ok(_public(row, secret), "Store the secret now: it is not shown again")


@router.get("/{webhook_id}", response_model=Envelope[WebhookPublic], responses=NOT_FOUND)
def get_webhook(webhook_id: WebhookId, principal: CanView, session: SessionDep) -> object:
    return ok(_public(service.get_webhook(session, principal, webhook_id)))


@router.put("/{webhook_id}", response_model=Envelope[WebhookPublic | WebhookWithSecret], responses=NOT_FOUND)
def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, principal: CanEdit, session: SessionDep, ip: ClientIP
) -> object:
    row, secret = service.update_webhook(session, principal, webhook_id, body, ip)
    return ok(_public(row, secret), "Webhook updated" + ("; store the new secret now" if secret else ""))


@router.delete("/{webhook_id}", response_model=MessageEnvelope, responses=NOT_FOUND)
def delete_webhook(webhook_id: WebhookId, principal: CanDelete, session: SessionDep, ip: ClientIP) -> object:
    service.delete_webhook(session, principal, webhook_id, ip)
    return {"status": "success", "message": "Webhook deleted", "data": {"webhook_id": webhook_id}}


@router.post("/{webhook_id}/test", response_model=Envelope[WebhookDeliveryPublic], responses=NOT_FOUND)
def test_webhook(webhook_id: WebhookId, principal: CanEdit, session: SessionDep, ip: ClientIP) -> object:
    """Sends a signed `webhook.test` event now, with the normal retries; answers with its log."""
    delivery = service.test_delivery(session, principal, webhook_id, ip)
    return ok(
        WebhookDeliveryPublic.model_validate(delivery).model_dump(mode="json"),
        "Delivered" if delivery.status == "success" else "Delivery failed",
    )


@router.get("/{webhook_id}/deliveries", response_model=Envelope[DeliveryPage], responses=NOT_FOUND)
def list_deliveries(
    webhook_id: WebhookId,
    principal: CanView,
    session: SessionDep,
    status_filter: Annotated[Literal["pending", "success", "failed"] | None, Query(alias="status")] = None,
    skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> object:
    rows, total = service.list_deliveries(
        session, principal, webhook_id, status=status_filter, skip=skip, limit=limit
    )
    items = [WebhookDeliveryPublic.model_validate(r).model_dump(mode="json") for r in rows]
    return ok({"items": items, "total": total, "skip": skip, "limit": limit})
