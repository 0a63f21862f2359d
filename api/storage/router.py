"""/api/v1/mvp/storage: mount storages, watch folders (Dagster sensors), import files (Dagster runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from api.auth.service import Principal
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND, Responses
from api.core.schemas import ErrorResponse
from api.deps import ClientIP, SessionDep, require_permission
from api.storage import service
from api.storage.schemas import (
    ImportAccepted,
    ImportCreate,
    ImportStatus,
    MountCreate,
    MountList,
    MountPublic,
    WatchCreate,
    WatchList,
    WatchPublic,
)

router = APIRouter(prefix="/mvp/storage", tags=["storage"], responses=ERROR_RESPONSES)

CanView = Annotated[Principal, Depends(require_permission("storage", "view"))]
CanCreate = Annotated[Principal, Depends(require_permission("storage", "create"))]
CanEdit = Annotated[Principal, Depends(require_permission("storage", "edit"))]
CanDelete = Annotated[Principal, Depends(require_permission("storage", "delete"))]
StorageId = Annotated[str, Path(max_length=40)]
WatchId = Annotated[str, Path(max_length=40)]
UNREACHABLE: Responses = {
    502: {
        "model": ErrorResponse,
        "description": "CONNECTOR_ERROR: the storage could not be reached or refused",
    },
    503: {"model": ErrorResponse, "description": "Dagster or the warehouse is not reachable"},
}


@router.post("/mount", response_model=MountPublic, responses={**CONFLICT, **UNREACHABLE})
def mount_storage(body: MountCreate, principal: CanCreate, session: SessionDep, ip: ClientIP) -> object:
    """Connects (local folder inside AETL_FILE_ROOTS, SFTP, SMB2/3), reports the free space and keeps
    the credentials encrypted. An unreachable storage or refused login is `502 CONNECTOR_ERROR`."""
    return service.public_mount(service.create_mount(session, body, principal.user, ip))


@router.get("/mounts", response_model=MountList)
def list_mounts(_: CanView, session: SessionDep) -> object:
    rows = service.list_mounts(session)
    return {"items": [service.public_mount(r) for r in rows], "total": len(rows)}


@router.get("/mounts/{storage_id}", response_model=MountPublic, responses=NOT_FOUND)
def get_mount(storage_id: StorageId, _: CanView, session: SessionDep) -> object:
    return service.public_mount(service.get_mount(session, storage_id))


@router.delete("/mounts/{storage_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def unmount_storage(storage_id: StorageId, principal: CanDelete, session: SessionDep, ip: ClientIP) -> None:
    """Removes the mount and its watches (their sensors leave Dagster)."""
    service.delete_mount(session, service.get_mount(session, storage_id), principal.user, ip)


@router.post(
    "/watch",
    status_code=status.HTTP_201_CREATED,
    response_model=WatchPublic,
    responses={**NOT_FOUND, **UNREACHABLE},
)
def watch_folder(body: WatchCreate, principal: CanCreate, session: SessionDep, ip: ClientIP) -> object:
    """A Dagster sensor (`watch_<id>`) over the folder: each new or changed complete file becomes one
    import run, exactly once (run key from path, size, mtime and content hash)."""
    return service.public_watch(service.create_watch(session, body, principal.user, ip))


@router.get("/watches", response_model=WatchList)
def list_watches(
    _: CanView, session: SessionDep, storage_id: Annotated[str | None, Query(max_length=40)] = None
) -> object:
    rows = service.list_watches(session, storage_id)
    return {"items": [service.public_watch(r) for r in rows], "total": len(rows)}


@router.get("/watches/{watch_id}", response_model=WatchPublic, responses=NOT_FOUND)
def get_watch(watch_id: WatchId, _: CanView, session: SessionDep) -> object:
    return service.public_watch(service.get_watch(session, watch_id))


@router.post("/watches/{watch_id}/pause", response_model=WatchPublic, responses={**NOT_FOUND, **UNREACHABLE})
def pause_watch(watch_id: WatchId, principal: CanEdit, session: SessionDep, ip: ClientIP) -> object:
    row = service.get_watch(session, watch_id)
    return service.public_watch(service.set_watch_running(session, row, False, principal.user, ip))


@router.post("/watches/{watch_id}/resume", response_model=WatchPublic, responses={**NOT_FOUND, **UNREACHABLE})
def resume_watch(watch_id: WatchId, principal: CanEdit, session: SessionDep, ip: ClientIP) -> object:
    row = service.get_watch(session, watch_id)
    return service.public_watch(service.set_watch_running(session, row, True, principal.user, ip))


@router.delete("/watches/{watch_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_watch(watch_id: WatchId, principal: CanDelete, session: SessionDep, ip: ClientIP) -> None:
    service.delete_watch(session, service.get_watch(session, watch_id), principal.user, ip)


@router.post(
    "/import",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportAccepted,
    responses={**NOT_FOUND, **UNREACHABLE},
)
def import_file(body: ImportCreate, principal: CanCreate, session: SessionDep, ip: ClientIP) -> object:
    """Infers the schema from a sample, checks an existing table (a mismatch names the columns) and
    starts one Dagster run that loads the whole file or nothing; rows that do not fit go to
    `<table>__rejected` with file, line, raw text and reason."""
    row, estimate = service.start_import(session, body, principal.user, ip)
    return {
        "import_id": row.id,
        "status": "processing",
        "run_id": row.run_id,
        "dagster_run_id": row.run_id,
        "storage_id": row.storage_id,
        "file_path": row.file_path,
        "target_table": row.target_table,
        "inferred_schema": row.inferred_schema,
        "estimated_rows": row.estimated_rows,
        "estimated_rows_exact": estimate["exact"],
        "estimate_method": estimate["method"],
        "started_at": row.started_at,
    }


@router.get("/imports/{import_id}", response_model=ImportStatus, responses=NOT_FOUND)
def get_import(import_id: Annotated[str, Path(max_length=40)], _: CanView, session: SessionDep) -> object:
    """Status, loaded and quarantined rows of the import's run (Dagster is the source of truth)."""
    return service.import_status(service.get_import(session, import_id))
