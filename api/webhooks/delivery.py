"""Signing, target checks and delivery of webhook events: no HTTP framework, no Dagster, so both the
API (test deliveries) and the Dagster run-status sensors (pipeline events) use this one module.

Each request carries
  X-AETL-Event, X-AETL-Delivery (id), X-AETL-Attempt, X-AETL-Timestamp (unix seconds) and
  X-AETL-Signature: sha256=HMAC_SHA256(secret, f"{timestamp}.{body}") in hex.
Receivers recompute the signature over the raw body and refuse timestamps older than a few
minutes, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.core import security
from api.core.config import Settings, get_settings
from api.core.schemas import iso_utc
from api.webhooks.models import Webhook, WebhookDelivery

logger = logging.getLogger("api.webhooks")

EVENTS = (
    "pipeline.started",
    "pipeline.completed",
    "pipeline.failed",
    "connector.created",
    "alert.triggered",
    "alert.resolved",
    "webhook.test",
)
SUBSCRIBABLE_EVENTS = tuple(e for e in EVENTS if e != "webhook.test")
SECRET_PURPOSE = b"webhook-secret"
SIGNATURE_HEADER = "X-AETL-Signature"
TIMESTAMP_HEADER = "X-AETL-Timestamp"
USER_AGENT = "AETL-Webhooks/1.0"


class TargetRefused(ValueError):
    """A URL the platform will not send to (scheme, or an address on a refused network)."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def encrypt(secret: str) -> str:
    return security.encrypt_secret(secret, SECRET_PURPOSE)


def decrypt(ciphertext: str) -> str | None:
    return security.decrypt_secret(ciphertext, SECRET_PURPOSE)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str, *, tolerance_seconds: int = 300) -> bool:
    """What a receiver does (used by the tests): signature match and a fresh timestamp."""
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _address_refused(address: str, settings: Settings) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if settings.webhook_allow_loopback else "loopback"
    if ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return None if settings.webhook_allow_private else "private"
    return None


def check_target(url: str, settings: Settings | None = None, *, resolve: bool = True) -> None:
    """Refuses anything but http(s) to public addresses (loopback/private only if settings allow).
    Checked at create/update and again before every delivery (DNS may change in between)."""
    settings = settings or get_settings()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("Webhook URL must use http or https")
    if not parts.hostname:
        raise TargetRefused("Webhook URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("Webhook URL must not carry credentials; the signature authenticates")
    if not resolve:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, ValueError) as exc:
        raise TargetRefused(f"Webhook host does not resolve: {parts.hostname}") from exc
    for info in infos:
        reason = _address_refused(str(info[4][0]), settings)
        if reason:
            raise TargetRefused(
                f"Webhook URL resolves to a {reason} address, which this server does not call"
            )


def envelope(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """The aggregator spec's payload: {event, timestamp, data}."""
    return {"event": event, "timestamp": iso_utc(security.utcnow()), "data": data}


@dataclass
class AttemptResult:
    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(
    client: httpx.Client, webhook: Webhook, secret: str, delivery: WebhookDelivery, attempt: int
) -> AttemptResult:
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-AETL-Event": delivery.event,
        "X-AETL-Delivery": delivery.id,
        "X-AETL-Attempt": str(attempt),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    started = time.perf_counter()
    try:
        response = client.post(webhook.url, content=body, headers=headers)
        return AttemptResult(response.status_code, (time.perf_counter() - started) * 1000, None)
    except httpx.HTTPError as exc:
        return AttemptResult(None, (time.perf_counter() - started) * 1000, type(exc).__name__)


def deliver(
    session: Session,
    webhook: Webhook,
    delivery: WebhookDelivery,
    *,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookDelivery:
    """Sends with retries and exponential backoff; every attempt is logged on the delivery row,
    which is committed after each attempt (a crash mid-way leaves an honest log)."""
    settings = settings or get_settings()
    secret = decrypt(webhook.secret_encrypted)
    attempts: list[dict[str, Any]] = list(delivery.attempt_log or [])
    if secret is None:
        delivery.status, delivery.error = (
            "failed",
            "signing secret cannot be decrypted (encryption key changed?)",
        )
        session.commit()
        return delivery
    # redirects are not followed: a 30x to an internal address would bypass the target check
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
        for attempt in range(1, settings.webhook_max_attempts + 1):
            try:
                check_target(webhook.url, settings)
                result = _post(client, webhook, secret, delivery, attempt)
            except TargetRefused as exc:
                result = AttemptResult(None, 0.0, str(exc))
            attempts.append(
                {
                    "attempt": attempt,
                    "status_code": result.status_code,
                    "latency_ms": round(result.latency_ms, 2),
                    "error": result.error,
                    "at": iso_utc(security.utcnow()),
                }
            )
            delivery.attempts = attempt
            delivery.attempt_log = list(attempts)
            delivery.response_status = result.status_code
            delivery.latency_ms = round(result.latency_ms, 2)
            delivery.error = result.error or (None if result.ok else f"HTTP {result.status_code}")
            if result.ok:
                delivery.status, delivery.delivered_at = "success", security.utcnow()
                session.commit()
                return delivery
            delivery.status = "pending" if attempt < settings.webhook_max_attempts else "failed"
            session.commit()
            if delivery.status == "failed" or (result.error and "does not call" in result.error):
                delivery.status = "failed"
                session.commit()
                break
            sleep(settings.webhook_backoff_seconds * 2 ** (attempt - 1))
    logger.warning(
        "webhook %s delivery %s failed after %s attempts", webhook.id, delivery.id, delivery.attempts
    )
    return delivery


def record(
    session: Session, webhook: Webhook, event: str, event_key: str, data: dict[str, Any]
) -> WebhookDelivery | None:
    """A new pending delivery, or None if this event was already recorded for this webhook."""
    delivery = WebhookDelivery(
        webhook_id=webhook.id, event=event, event_key=event_key[:200], payload=envelope(event, data)
    )
    session.add(delivery)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return delivery


# a webhook gets an event only while its owner may see what the event is about
EVENT_PERMISSION = {
    "pipeline.started": ("pipelines", "view"),
    "pipeline.completed": ("pipelines", "view"),
    "pipeline.failed": ("pipelines", "view"),
    "alert.triggered": ("pipelines", "view"),
    "alert.resolved": ("pipelines", "view"),
    "connector.created": ("connectors", "view"),
}


def subscribers(session: Session, event: str) -> list[Webhook]:
    from api.core.permissions import role_can
    from api.users.models import User

    rows = session.execute(
        select(Webhook, User.role)
        .outerjoin(User, User.id == Webhook.owner_id)
        .where(Webhook.is_active.is_(True))
    ).all()
    needed = EVENT_PERMISSION.get(event)
    return [
        webhook
        for webhook, role in rows
        if event in (webhook.events or [])
        and (needed is None or (role is not None and role_can(role, *needed)))
    ]


def publish(session: Session, event: str, event_key: str, data: dict[str, Any]) -> list[WebhookDelivery]:
    """Delivers one event occurrence to every active subscriber (each at most once)."""
    out = []
    for webhook in subscribers(session, event):
        delivery = record(session, webhook, event, event_key, data)
        if delivery is not None:
            out.append(deliver(session, webhook, delivery))
    return out
