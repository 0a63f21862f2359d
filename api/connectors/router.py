"""/api/v1/connectors: list/create/test/schema (ai-etl bodies), get/update/delete (aggregator envelope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, status

from api.auth.service import Principal
from api.connectors import service
from api.connectors.schemas import (
    ConnectorCreate,
    ConnectorList,
    ConnectorPublic,
    ConnectorTestResult,
    ConnectorUpdate,
    TableSchemaPublic,
)
from api.core.paging import Page, paging_dependency
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND, Responses
from api.core.schemas import Envelope, ErrorResponse, MessageEnvelope, iso_utc, ok
from api.deps import ClientIP, SessionDep, require_permission
from api.webhooks import service as webhooks_service

router = APIRouter(prefix="/connectors", tags=["connectors"], responses=ERROR_RESPONSES)

CanView = Annotated[Principal, Depends(require_permission("connectors", "view"))]
CanCreate = Annotated[Principal, Depends(require_permission("connectors", "create"))]
CanEdit = Annotated[Principal, Depends(require_permission("connectors", "edit"))]
CanDelete = Annotated[Principal, Depends(require_permission("connectors", "delete"))]
ConnectorId = Annotated[str, Path(max_length=64)]
CONNECTOR_FAILED: Responses = {
    502: {
        "model": ErrorResponse,
        "description": "CONNECTOR_ERROR: the source could not be reached or refused",
    }
}


def _public(row: object) -> dict[str, object]:
    return ConnectorPublic.model_validate(service.public(row)).model_dump(mode="json")  # type: ignore[arg-type]


@router.get("", response_model=ConnectorList)
def list_connectors(
    _: CanView,
    session: SessionDep,
    page: Annotated[Page, Depends(paging_dependency(max_limit=500))],
    type: Annotated[str | None, Query(max_length=32)] = None,  # noqa: A002 - the spec's name
    connector_type: Annotated[str | None, Query(max_length=32)] = None,
    status_filter: Annotated[str | None, Query(alias="status", max_length=16)] = None,
) -> object:
    rows, total = service.list_connectors(
        session,
        connector_type=type or connector_type,
        status=status_filter,
        limit=page.limit,
        offset=page.offset,
    )
    return {"items": [_public(r) for r in rows], "total": total, "limit": page.limit, "offset": page.offset}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConnectorPublic, responses=CONFLICT)
def create_connector(
    body: ConnectorCreate,
    principal: CanCreate,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> object:
    """Validated against the type's configuration model; credentials are encrypted at rest and
    never returned (masked as `********`). Webhooks subscribed to `connector.created` get the
    connector's id, name, type and creator (never its configuration)."""
    row = service.create_connector(session, body, principal.user, ip)
    background.add_task(
        webhooks_service.publish_in_background,
        "connector.created",
        f"{row.id}:connector.created",
        {
            "connector_id": row.id,
            "name": row.name,
            "type": row.type,
            "created_by": row.created_by,
            "created_at": iso_utc(row.created_at),
        },
    )
    return _public(row)


@router.get("/{connector_id}", response_model=Envelope[ConnectorPublic], responses=NOT_FOUND)
def get_connector(connector_id: ConnectorId, _: CanView, session: SessionDep) -> object:
    return ok(_public(service.get_connector(session, connector_id)))


@router.put("/{connector_id}", response_model=Envelope[ConnectorPublic], responses={**NOT_FOUND, **CONFLICT})
def update_connector(
    connector_id: ConnectorId, body: ConnectorUpdate, principal: CanEdit, session: SessionDep, ip: ClientIP
) -> object:
    """Partial update: given config keys replace stored ones; a secret sent as `********` is kept."""
    row = service.get_connector(session, connector_id)
    return ok(_public(service.update_connector(session, row, body, principal.user, ip)), "Connector updated")


@router.delete("/{connector_id}", response_model=MessageEnvelope, responses=NOT_FOUND)
def delete_connector(
    connector_id: ConnectorId, principal: CanDelete, session: SessionDep, ip: ClientIP
) -> object:
    row = service.get_connector(session, connector_id)
    service.delete_connector(session, row, principal.user, ip)
    return {"status": "success", "message": "Connector deleted", "data": {"connector_id": connector_id}}


@router.post(
    "/{connector_id}/test", response_model=ConnectorTestResult, responses={**NOT_FOUND, **CONNECTOR_FAILED}
)
def test_connector(connector_id: ConnectorId, _: CanView, session: SessionDep) -> object:
    """Connects, authenticates and runs a query within 5 s. A failure is `502 CONNECTOR_ERROR` whose
    `details.step`/`details.reason` say what failed (dns, refused, timeout, auth, database_missing)."""
    return service.test_connector(session, service.get_connector(session, connector_id))


@router.get(
    "/{connector_id}/schema/{table_name:path}",
    response_model=TableSchemaPublic,
    responses={**NOT_FOUND, **CONNECTOR_FAILED},
)
def get_table_schema(
    connector_id: ConnectorId,
    table_name: Annotated[str, Path(max_length=512)],
    _: CanView,
    session: SessionDep,
) -> object:
    """Columns with source and ClickHouse types, nullability, primary key, indexes and the row count
    (`row_count_exact: false` when it is an estimate from statistics)."""
    row = service.get_connector(session, connector_id)
    return service.table_schema(row, table_name).as_dict()
