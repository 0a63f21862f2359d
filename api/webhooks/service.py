"""Webhook subscriptions: owned by their creator; administrators see and manage all of them."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.auth.service import Principal
from api.core.errors import BadRequest, NotFound
from api.core.permissions import ADMIN_ROLE
from api.webhooks import delivery as webhook_delivery
from api.webhooks.models import Webhook, WebhookDelivery
from api.webhooks.schemas import WebhookCreate, WebhookUpdate

logger = logging.getLogger("api.webhooks")


def _checked_url(url: str) -> str:
    try:
        webhook_delivery.check_target(url)
    except webhook_delivery.TargetRefused as exc:
        raise BadRequest(str(exc), field="url") from exc
    return url


def _visible(principal: Principal) -> Any:
    query = select(Webhook)
    if principal.user.role != ADMIN_ROLE:
        query = query.where(Webhook.owner_id == principal.user.id)
    return query


def list_webhooks(session: Session, principal: Principal) -> list[Webhook]:
    return list(session.scalars(_visible(principal).order_by(Webhook.created_at, Webhook.id)))


def get_webhook(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    row = session.scalar(_visible(principal).where(Webhook.id == webhook_id))
    if row is None:
        raise NotFound("Webhook not found", details={"webhook_id": webhook_id[:64]})
    return row


def create_webhook(
    session: Session, principal: Principal, data: WebhookCreate, ip: str | None
) -> tuple[Webhook, str]:
    secret = webhook_delivery.new_secret()
    row = Webhook(
        owner_id=principal.user.id,
        name=data.name,
        url=_checked_url(data.url),
        events=list(data.events),
        secret_encrypted=webhook_delivery.encrypt(secret),
        is_active=data.is_active,
    )
    session.add(row)
    session.flush()
    log_activity(
        session, principal.user.id, "webhook.create", "webhook", row.id, ip=ip, details={"events": row.events}
    )
    session.commit()
    return row, secret


def update_webhook(
    session: Session, principal: Principal, webhook_id: str, data: WebhookUpdate, ip: str | None
) -> tuple[Webhook, str | None]:
    row = get_webhook(session, principal, webhook_id)
    changes = data.model_dump(exclude_unset=True)
    if data.name is not None:
        row.name = data.name
    if data.url is not None:
        row.url = _checked_url(data.url)
    if data.events is not None:
        row.events = list(data.events)
    if data.is_active is not None:
        row.is_active = data.is_active
    secret = None
    if data.rotate_secret:
        secret = webhook_delivery.new_secret()
        row.secret_encrypted = webhook_delivery.encrypt(secret)
    log_activity(
        session,
        principal.user.id,
        "webhook.update",
        "webhook",
        row.id,
        ip=ip,
        details={"fields": sorted(changes)},
    )
    session.commit()
    return row, secret


def delete_webhook(session: Session, principal: Principal, webhook_id: str, ip: str | None) -> None:
    row = get_webhook(session, principal, webhook_id)
    session.delete(row)
    log_activity(session, principal.user.id, "webhook.delete", "webhook", webhook_id, ip=ip)
    session.commit()


def test_delivery(session: Session, principal: Principal, webhook_id: str, ip: str | None) -> WebhookDelivery:
    """Sends a signed `webhook.test` event now (with the normal retries) and returns its log."""
    row = get_webhook(session, principal, webhook_id)
    data = {"webhook_id": row.id, "message": "Test delivery from AETL"}
    delivery = webhook_delivery.record(session, row, "webhook.test", f"test:{uuid.uuid4().hex}", data)
    assert delivery is not None  # a fresh key never clashes
    result = webhook_delivery.deliver(session, row, delivery)
    log_activity(
        session,
        principal.user.id,
        "webhook.test",
        "webhook",
        row.id,
        ip=ip,
        status="success" if result.status == "success" else "failure",
    )
    session.commit()
    return result


def list_deliveries(
    session: Session, principal: Principal, webhook_id: str, *, status: str | None, skip: int, limit: int
) -> tuple[list[WebhookDelivery], int]:
    get_webhook(session, principal, webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).offset(skip).limit(limit)
    )
    return list(rows), int(total or 0)


def publish_in_background(event: str, event_key: str, data: dict[str, Any]) -> None:
    """An API-side event (e.g. `connector.created`), delivered after the response with its own
    session: retries with backoff must not hold the request."""
    from api.db.session import new_session

    session = new_session()
    try:
        webhook_delivery.publish(session, event, event_key, data)
    except Exception:  # a failed delivery is logged on its row; nothing else may break here
        logger.exception("publishing %s failed", event)
    finally:
        session.close()
