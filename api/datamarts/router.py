"""/api/v1/mvp/datamarts: thin routes over the datamarts service (ai-etl spec bodies)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.responses import FileResponse

from api.auth.service import Principal
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND
from api.datamarts import service
from api.datamarts.models import Datamart
from api.datamarts.schemas import (
    DatamartCreate,
    DatamartCreated,
    DatamartPreview,
    DatamartPublic,
    ExcelExport,
    ExcelExportRequest,
    RefreshRequest,
    RefreshStarted,
    SchedulePublic,
    ScheduleRequest,
)
from api.deps import ClientIP, SessionDep, require_permission
from api.pipelines.service import RUN_STATUS_NAMES
from orchestration.specs.datamart import NAME_PATTERN, asset_key, schedule_name

router = APIRouter(prefix="/mvp/datamarts", tags=["datamarts"], responses=ERROR_RESPONSES)
export_router = APIRouter(prefix="/mvp/export", tags=["datamarts"], responses=ERROR_RESPONSES)
# the signed link is the credential: no session needed to download (as a storage link would be)
download_router = APIRouter(prefix="/mvp/export", tags=["exports"])

CanView = Annotated[Principal, Depends(require_permission("datamarts", "view"))]
CanCreate = Annotated[Principal, Depends(require_permission("datamarts", "create"))]
CanDelete = Annotated[Principal, Depends(require_permission("datamarts", "delete"))]
CanEdit = Annotated[Principal, Depends(require_permission("datamarts", "edit"))]
CanRefresh = Annotated[Principal, Depends(require_permission("datamarts", "refresh"))]
CanExport = Annotated[Principal, Depends(require_permission("datamarts", "export"))]
CanPreview = Annotated[Principal, Depends(require_permission("datamarts", "preview"))]
PreviewLimit = Annotated[
    int, Query(ge=1, le=1_000_000, description=f"rows (capped at {service.MAX_PREVIEW_ROWS})")
]
DatamartName = Annotated[str, Path(pattern=NAME_PATTERN, description="the datamart's name")]


def public(datamart: Datamart) -> DatamartPublic:
    run = service.last_run(datamart)
    return DatamartPublic(
        datamart_name=datamart.name,
        description=datamart.description,
        status=datamart.status,
        materialized=datamart.materialized,
        version=datamart.version,
        row_count=service.count_rows(datamart.name) if datamart.status == "active" else datamart.row_count,
        refresh_schedule=datamart.refresh_schedule,
        schedule_enabled=datamart.schedule_enabled,
        next_refresh=service.next_fire(datamart.refresh_schedule) if datamart.schedule_enabled else None,
        last_error=datamart.last_error,
        last_run_id=datamart.last_run_id,
        last_run_status=RUN_STATUS_NAMES[run.status] if run else None,
        built_at=datamart.built_at,
        created_at=datamart.created_at,
        dagster_asset_key=list(asset_key(datamart.name)),
    )


@router.post(
    "/create", status_code=status.HTTP_201_CREATED, response_model=DatamartCreated, responses=CONFLICT
)
def create_datamart(
    body: DatamartCreate, session: SessionDep, principal: CanCreate, ip: ClientIP
) -> DatamartCreated:
    """Check the query, write the dbt model and its .yml, reload Dagster and build it once (waits)."""
    datamart, run = service.create_datamart(session, principal, body, ip)
    active = datamart.status == "active"
    return DatamartCreated(
        datamart_name=datamart.name,
        status="created" if active else "failed",
        row_count=datamart.row_count if active else None,
        created_at=datamart.created_at,
        next_refresh=service.next_fire(datamart.refresh_schedule) if datamart.schedule_enabled else None,
        version=datamart.version,
        materialized=datamart.materialized,
        dagster_asset_key=list(asset_key(datamart.name)),
        dagster_run_id=datamart.last_run_id,
        error=datamart.last_error,
    )


@router.get("/{datamart_name}", response_model=DatamartPublic, responses=NOT_FOUND)
def get_datamart(datamart_name: DatamartName, session: SessionDep, principal: CanView) -> DatamartPublic:
    datamart = service.get_datamart(session, datamart_name)
    session.commit()
    return public(datamart)


@router.delete("/{datamart_name}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_datamart(
    datamart_name: DatamartName, session: SessionDep, principal: CanDelete, ip: ClientIP
) -> Response:
    """Removes the model, its Dagster job and schedule, and its table or view."""
    service.delete_datamart(session, principal, datamart_name, ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{datamart_name}/refresh",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RefreshStarted,
    responses={**NOT_FOUND, **CONFLICT},
)
def refresh_datamart(
    datamart_name: DatamartName,
    session: SessionDep,
    principal: CanRefresh,
    ip: ClientIP,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> RefreshStarted:
    """A Dagster run of the datamart's job; the new table is swapped in atomically when it is built."""
    request = body or RefreshRequest()
    run_id, started = service.refresh_datamart(session, principal, datamart_name, request.concurrent_mode, ip)
    return RefreshStarted(
        datamart_name=datamart_name,
        refresh_status="in_progress",
        started_at=started,
        run_id=run_id,
        dagster_run_id=run_id,
    )


@router.post("/{datamart_name}/schedule", response_model=SchedulePublic, responses={**NOT_FOUND, **CONFLICT})
def schedule_datamart(
    datamart_name: DatamartName,
    body: ScheduleRequest,
    session: SessionDep,
    principal: CanEdit,
    ip: ClientIP,
) -> SchedulePublic:
    """The cron becomes the datamart's Dagster schedule, started or stopped."""
    datamart, next_run = service.schedule_datamart(
        session, principal, datamart_name, body.cron_expression, body.enabled, ip
    )
    return SchedulePublic(
        datamart_name=datamart.name,
        schedule=datamart.refresh_schedule or body.cron_expression,
        next_run=next_run,
        enabled=datamart.schedule_enabled,
        dagster_schedule_name=schedule_name(datamart.name),
    )


@router.get("/{datamart_name}/preview", response_model=DatamartPreview, responses={**NOT_FOUND, **CONFLICT})
def preview_datamart(
    datamart_name: DatamartName,
    session: SessionDep,
    principal: CanPreview,
    limit: Annotated[
        int, Query(ge=1, le=1_000_000, description=f"rows (at most {service.MAX_PREVIEW_ROWS})")
    ] = 100,
) -> DatamartPreview:
    columns, types, rows, total, effective = service.preview(session, datamart_name, limit)
    return DatamartPreview(
        datamart_name=datamart_name,
        columns=columns,
        column_types=types,
        rows=rows,
        total_rows=total,
        limit=effective,
    )


@export_router.post(
    "/excel/datamart/{datamart_name}", response_model=ExcelExport, responses={**NOT_FOUND, **CONFLICT}
)
def export_datamart_excel(
    datamart_name: DatamartName,
    request: Request,
    session: SessionDep,
    principal: CanExport,
    body: Annotated[ExcelExportRequest | None, Body()] = None,
) -> ExcelExport:
    """An .xlsx (data sheets, summary, native chart) behind a signed download link that expires."""
    options = body or ExcelExportRequest()
    url, size, expires_at, facts = service.export_excel(
        session,
        datamart_name,
        include_summary=options.include_summary,
        include_charts=options.include_charts,
        base_url=str(request.base_url),
    )
    return ExcelExport(
        file_url=url, file_size_bytes=size, expires_at=expires_at, rows=facts.rows, sheets=facts.sheets
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@download_router.get(
    "/files/{file_id}.xlsx",
    response_class=FileResponse,
    responses={
        200: {
            "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
            "description": "the workbook",
        },
        403: ERROR_RESPONSES[403],
        410: {**NOT_FOUND[404], "description": "The link has expired"},
        422: ERROR_RESPONSES[422],
    },
)
def download_export(
    file_id: Annotated[str, Path(pattern=r"^[a-z0-9_T]{1,120}$")],
    expires: Annotated[int, Query(ge=0, le=10**11)],
    signature: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
) -> FileResponse:
    path = service.export_file(file_id, expires, signature)
    return FileResponse(path, media_type=XLSX, filename=path.name)
