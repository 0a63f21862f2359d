"""/api/v1/projects: create, list, get, update, delete (soft). Bare bodies like the ai-etl spec's
resources (`project_id` on pipelines refers to these)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Response, status

from api.admin import deletion
from api.auth.service import Principal
from api.core.paging import PagingDep
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND
from api.deps import ClientIP, SessionDep, require_permission
from api.projects import service
from api.projects.schemas import ProjectCreate, ProjectList, ProjectPublic, ProjectUpdate

router = APIRouter(prefix="/projects", tags=["projects"], responses=ERROR_RESPONSES)

CanView = Annotated[Principal, Depends(require_permission("projects", "view"))]
CanCreate = Annotated[Principal, Depends(require_permission("projects", "create"))]
CanEdit = Annotated[Principal, Depends(require_permission("projects", "edit"))]
CanDelete = Annotated[Principal, Depends(require_permission("projects", "delete"))]
ProjectId = Annotated[str, Path(max_length=64)]


@router.get("", response_model=ProjectList)
def list_projects(
    _: CanView,
    session: SessionDep,
    page: PagingDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> object:
    rows, total = service.list_projects(session, offset=page.offset, limit=page.limit, search=search)
    return {"items": rows, "total": total, "limit": page.limit, "offset": page.offset}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic, responses=CONFLICT)
def create_project(body: ProjectCreate, principal: CanCreate, session: SessionDep, ip: ClientIP) -> object:
    return service.create_project(session, principal.user, body, ip)


@router.get("/{project_id}", response_model=ProjectPublic, responses=NOT_FOUND)
def get_project(project_id: ProjectId, _: CanView, session: SessionDep) -> object:
    return service.get_project(session, project_id)


@router.put("/{project_id}", response_model=ProjectPublic, responses={**NOT_FOUND, **CONFLICT})
def update_project(
    project_id: ProjectId, body: ProjectUpdate, principal: CanEdit, session: SessionDep, ip: ClientIP
) -> object:
    return service.update_project(session, principal.user, project_id, body, ip)


@router.delete(
    "/{project_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=NOT_FOUND
)
def delete_project(
    project_id: ProjectId,
    principal: CanDelete,
    session: SessionDep,
    ip: ClientIP,
    background: BackgroundTasks,
) -> Response:
    """Soft delete with its pipelines (their Dagster definitions leave with a reload): an administrator
    can restore it (`/admin/projects/{id}/restore`) or purge it."""
    service.delete_project(session, principal.user, project_id, ip)
    for task in deletion.pop_after_commit(session):
        background.add_task(task)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
