"""Connector business rules: validate typed configurations, keep secrets encrypted, test, introspect."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.connectors.models import Connector
from api.connectors.schemas import ConnectorCreate, ConnectorUpdate
from api.core.errors import Conflict, ConnectorError, NotFound, ValidationFailed
from api.db.models import User
from orchestration import connectors
from orchestration.connectors.config import (
    MASK,
    ConnectorConfig,
    ConnectorConfigError,
    normalize_type,
    parse_connector_config,
    split_secrets,
)
from orchestration.connectors.store import decode_stored
from orchestration.lib.secrets import CONNECTOR_SECRETS, encrypt_secret

logger = logging.getLogger("api.connectors")


def _invalid(error: ConnectorConfigError) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid value for '{error.field}': {error.message}",
        field=error.field,
        details={"field": error.field, "reason": error.message},
    )


def _secrets_token(secrets: dict[str, str]) -> str | None:
    return encrypt_secret(json.dumps(secrets), CONNECTOR_SECRETS) if secrets else None


def _stored_secrets(row: Connector) -> dict[str, str]:
    config = decode_stored(row.type, row.config, row.secrets)
    return split_secrets(config)[1]


def connector_config(row: Connector) -> ConnectorConfig:
    """The full configuration with decrypted credentials (used to connect, never returned)."""
    try:
        return decode_stored(row.type, row.config, row.secrets)
    except ValueError as error:
        raise ConnectorError(
            "Connector settings cannot be read (was AETL_ENCRYPTION_KEY changed?)",
            details={"connector_id": row.id, "reason": str(error)[:200]},
        ) from None


def public(row: Connector) -> dict[str, Any]:
    """The connector as responses show it: every secret masked."""
    try:
        secret_names = list(_stored_secrets(row))
    except ValueError:
        secret_names = ["password"] if row.secrets else []
    config = {k: v for k, v in (row.config or {}).items() if k != "type"}
    config.update(dict.fromkeys(secret_names, MASK))
    return {
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "connector_type": row.type,
        "description": row.description,
        "status": row.status,
        "config": config,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_tested": row.last_tested,
        "test_status": row.test_status,
        "test_message": row.test_message,
    }


def _name_taken(session: Session, name: str, exclude_id: str | None = None) -> bool:
    query = (
        select(func.count())
        .select_from(Connector)
        .where(Connector.name == name, Connector.deleted_at.is_(None))
    )
    if exclude_id:
        query = query.where(Connector.id != exclude_id)
    return bool(session.scalar(query))


def create_connector(session: Session, body: ConnectorCreate, user: User, ip: str | None) -> Connector:
    try:
        config = parse_connector_config(body.kind, body.config, body.credentials)
    except ConnectorConfigError as error:
        raise _invalid(error) from None
    if _name_taken(session, body.name):
        raise Conflict(f"A connector named {body.name!r} already exists", details={"name": body.name})
    public_config, secrets = split_secrets(config)
    public_config.pop("type", None)
    row = Connector(
        name=body.name,
        type=config.type,
        description=body.description,
        config=public_config,
        secrets=_secrets_token(secrets),
        created_by=user.id,
    )
    session.add(row)
    session.flush()
    log_activity(session, user.id, "connector.create", "connector", row.id, ip=ip, details={"type": row.type})
    session.commit()
    return row


def list_connectors(
    session: Session, *, connector_type: str | None, status: str | None, limit: int, offset: int
) -> tuple[list[Connector], int]:
    query = select(Connector).where(Connector.deleted_at.is_(None))
    if connector_type:
        query = query.where(Connector.type == normalize_type(connector_type))
    if status:
        query = query.where(Connector.status == status)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(Connector.created_at.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


def get_connector(session: Session, connector_id: str) -> Connector:
    row = session.get(Connector, connector_id)
    if row is None or row.deleted_at is not None:
        raise NotFound("Connector not found", details={"connector_id": connector_id})
    return row


def update_connector(
    session: Session, row: Connector, body: ConnectorUpdate, user: User, ip: str | None
) -> Connector:
    if body.config is not None or body.credentials is not None:
        stored = connector_config(row)
        public_config, secrets = split_secrets(stored)
        public_config.pop("type", None)
        incoming = {**(body.config or {}), **(body.credentials or {})}
        for key, value in incoming.items():
            # a masked value sent back unchanged means "keep the stored secret"
            if value == MASK and key in secrets:
                continue
            if key in secrets or key in ("password",):
                secrets[key] = value
            else:
                public_config[key] = value
        try:
            config = parse_connector_config(row.type, public_config, {k: v for k, v in secrets.items()})
        except ConnectorConfigError as error:
            raise _invalid(error) from None
        new_public, new_secrets = split_secrets(config)
        new_public.pop("type", None)
        row.config = new_public
        row.secrets = _secrets_token(new_secrets)
        row.test_status = None
    if body.name is not None and body.name != row.name:
        if _name_taken(session, body.name, exclude_id=row.id):
            raise Conflict(f"A connector named {body.name!r} already exists", details={"name": body.name})
        row.name = body.name
    if body.description is not None:
        row.description = body.description
    if body.status is not None:
        row.status = body.status
    row.updated_at = datetime.now(UTC)
    changed = sorted(k for k, v in body.model_dump(exclude_unset=True).items() if v is not None)
    log_activity(
        session, user.id, "connector.update", "connector", row.id, ip=ip, details={"fields": changed}
    )
    session.commit()
    return row


def delete_connector(session: Session, row: Connector, user: User, ip: str | None) -> None:
    """Soft delete: runs that name it fail with "does not exist"; its secrets are wiped."""
    row.deleted_at = datetime.now(UTC)
    row.status = "deleted"
    row.secrets = None
    log_activity(session, user.id, "connector.delete", "connector", row.id, ip=ip)
    session.commit()


def _failure(error: connectors.ConnectorFailure, row: Connector, details: dict[str, Any]) -> ConnectorError:
    return ConnectorError(
        f"Connection test failed: {error.message}",
        details={"connector_id": row.id, "step": error.step, "reason": error.reason, "steps": details},
    )


def test_connector(session: Session, row: Connector) -> dict[str, Any]:
    """Connect, authenticate, run a query; the outcome is stored on the connector either way."""
    config = connector_config(row)
    tested_at = datetime.now(UTC)
    try:
        report = connectors.test_connection(config)
    except connectors.ConnectorFailure as error:
        row.last_tested, row.test_status, row.test_message = tested_at, "failed", error.message[:1000]
        session.commit()
        logger.info("connector test failed id=%s reason=%s step=%s", row.id, error.reason, error.step)
        steps = _failed_steps(error)
        raise _failure(error, row, steps) from None
    row.last_tested, row.test_status, row.test_message = tested_at, "success", None
    session.commit()
    return {
        "connector_id": row.id,
        "test_status": "success",
        "latency_ms": round(report.latency_ms, 1),
        "tested_at": tested_at,
        "details": report.details,
        "server_version": report.server_version,
        "message": "Connection successful",
    }


_STEP_ORDER = (
    ("dns", "dns_resolved"),
    ("connect", "connection_established"),
    ("authenticate", "authentication_successful"),
    ("database", "database_exists"),
    ("query", "query_execution_successful"),
)


def _failed_steps(error: connectors.ConnectorFailure) -> dict[str, bool]:
    """The spec's per-step `details`: true up to the step that failed, false from there on."""
    if error.step == "path":
        return {"path_inside_roots": error.reason != "path", "query_execution_successful": False}
    out: dict[str, bool] = {}
    passed = True
    for step, key in _STEP_ORDER:
        if step == error.step:
            passed = False
        out[key] = passed
    return out


def table_schema(row: Connector, table: str) -> connectors.TableSchema:
    config = connector_config(row)
    try:
        return connectors.describe_table(config, table)
    except connectors.InvalidTableName as error:
        raise ValidationFailed(
            f"Invalid value for 'table_name': {error}",
            field="table_name",
            details={"table_name": table[:200]},
        ) from None
    except connectors.ConnectorFailure as error:
        if error.reason == "table_missing":
            raise NotFound(error.message, details={"connector_id": row.id, "table": table[:200]}) from None
        raise ConnectorError(
            error.message, details={"connector_id": row.id, "step": error.step, "reason": error.reason}
        ) from None


def tables(row: Connector) -> list[connectors.TableRef]:
    config = connector_config(row)
    try:
        return connectors.list_tables(config)
    except connectors.ConnectorFailure as error:
        raise ConnectorError(
            error.message, details={"connector_id": row.id, "step": error.step, "reason": error.reason}
        ) from None
