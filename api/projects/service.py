"""Project rules: names unique among live projects, soft delete (the admin domain restores/purges)."""

from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.core import security
from api.core.errors import Conflict, NotFound
from api.projects.models import Project
from api.projects.schemas import ProjectCreate, ProjectUpdate
from api.users.models import User


def name_taken(session: Session, name: str, except_id: str | None = None) -> bool:
    condition = [func.lower(Project.name) == name.lower(), Project.deleted_at.is_(None)]
    if except_id:
        condition.append(Project.id != except_id)
    return bool(session.scalar(select(exists().where(*condition))))


def list_projects(
    session: Session, *, offset: int, limit: int, search: str | None
) -> tuple[list[Project], int]:
    query = select(Project).where(Project.deleted_at.is_(None))
    if search:
        query = query.where(Project.name.ilike(f"%{search}%"))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Project.created_at, Project.id).offset(offset).limit(limit))
    return list(rows), int(total or 0)


def get_project(session: Session, project_id: str) -> Project:
    row = session.get(Project, project_id)
    if row is None or row.deleted_at is not None:
        raise NotFound("Project not found", details={"project_id": project_id[:64]})
    return row


def create_project(session: Session, actor: User, data: ProjectCreate, ip: str | None) -> Project:
    if name_taken(session, data.name):
        raise Conflict("A project with this name already exists", field="name")
    row = Project(name=data.name, description=data.description, owner_id=actor.id)
    session.add(row)
    session.flush()
    log_activity(session, actor.id, "project.create", "project", row.id, ip=ip)
    session.commit()
    return row


def update_project(
    session: Session, actor: User, project_id: str, data: ProjectUpdate, ip: str | None
) -> Project:
    row = get_project(session, project_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name") and changes["name"] != row.name:
        if name_taken(session, changes["name"], except_id=row.id):
            raise Conflict("A project with this name already exists", field="name")
        row.name = changes["name"]
    if "description" in changes:
        row.description = changes["description"]
    log_activity(
        session, actor.id, "project.update", "project", row.id, ip=ip, details={"fields": sorted(changes)}
    )
    session.commit()
    return row


def delete_project(session: Session, actor: User, project_id: str, ip: str | None) -> Project:
    """Soft delete: hidden everywhere, listed by /admin/deleted-entities until restored or purged."""
    from api.admin import deletion  # the registry of what a project owns

    row = get_project(session, project_id)
    row.deleted_at = security.utcnow()
    row.deleted_by = actor.id
    related = deletion.cascade_soft_delete(session, "projects", row.id, actor.id)
    log_activity(session, actor.id, "project.delete", "project", row.id, ip=ip, details={"related": related})
    session.commit()
    return row
