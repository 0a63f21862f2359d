"""/api/v1/schema: introspect a connector, store field mappings, compare schemas, mapping → SQL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from api.auth.service import Principal
from api.connectors.router import CONNECTOR_FAILED
from api.core.responses import ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, ok
from api.deps import ClientIP, SessionDep, require_permission
from api.schema import service
from api.schema.schemas import (
    CompareRequest,
    CompareResult,
    GeneratedTransformation,
    GenerateRequest,
    IntrospectRequest,
    IntrospectResult,
    MappingCreate,
    MappingPublic,
)

router = APIRouter(prefix="/schema", tags=["schema"], responses=ERROR_RESPONSES)

# reading a source's structure is viewing the connector; storing a mapping changes what it feeds
CanView = Annotated[Principal, Depends(require_permission("connectors", "view"))]
CanEdit = Annotated[Principal, Depends(require_permission("connectors", "edit"))]


@router.post(
    "/introspect", response_model=Envelope[IntrospectResult], responses={**NOT_FOUND, **CONNECTOR_FAILED}
)
def introspect(body: IntrospectRequest, _: CanView, session: SessionDep) -> object:
    """Tables of a connector with columns (source and ClickHouse types), nullability, primary keys,
    indexes and row counts (`row_count_exact: false` marks estimates)."""
    result = service.introspect(
        session, str(body.connector_id), body.tables, body.include_columns, body.max_tables
    )
    return ok(IntrospectResult.model_validate(result).model_dump(mode="json"))


@router.post(
    "/map",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[MappingPublic],
    responses={**NOT_FOUND, **CONNECTOR_FAILED},
)
def create_mapping(body: MappingCreate, principal: CanEdit, session: SessionDep, ip: ClientIP) -> object:
    """Stores a source → target field mapping; without `fields`, every source column is mapped to a
    same-named (snake_case) column with its ClickHouse type."""
    mapping = service.create_mapping(session, body, principal.user, ip)
    return ok(
        MappingPublic.model_validate(service.mapping_public(mapping)).model_dump(mode="json"),
        "Mapping created",
    )


@router.get("/mappings/{mapping_id}", response_model=Envelope[MappingPublic], responses=NOT_FOUND)
def get_mapping(mapping_id: Annotated[str, Path(max_length=64)], _: CanView, session: SessionDep) -> object:
    mapping = service.get_mapping(session, mapping_id)
    return ok(MappingPublic.model_validate(service.mapping_public(mapping)).model_dump(mode="json"))


@router.post("/compare", response_model=Envelope[CompareResult], responses={**NOT_FOUND, **CONNECTOR_FAILED})
def compare(body: CompareRequest, _: CanView, session: SessionDep) -> object:
    """Column-by-column diff of two schemas (connector tables or inline columns); `safe` says whether
    loading source values into the target column keeps every value."""
    return ok(CompareResult.model_validate(service.compare(session, body)).model_dump(mode="json"))


@router.post(
    "/generate-transformation",
    response_model=Envelope[GeneratedTransformation],
    responses={**NOT_FOUND, **CONNECTOR_FAILED},
)
def generate_transformation(body: GenerateRequest, _: CanView, session: SessionDep) -> object:
    """The SQL step a pipeline runs for a mapping (casts and expressions over the staged source),
    with ready `sources[]`/`transformations[]`/`targets[]` items for a pipeline document."""
    result = service.generate(
        session, body.mapping_id, body.mapping, body.source_relation, body.transformation_id
    )
    return ok(GeneratedTransformation.model_validate(result).model_dump(mode="json"))
