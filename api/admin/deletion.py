"""Soft deletion across entity kinds: one registry, so the admin routes work for every kind.

Projects register here now; the pipelines domain registers its kind (and itself as a dependent of
projects) the same way, with `register_kind` and `register_dependent`, and the admin routes
(`/admin/deleted-entities`, `/admin/deletion-stats`, restore, permanent, cleanup-old-deletions)
pick it up without change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.orm import Mapped, Session

from api.core import security
from api.core.errors import Conflict, NotFound

# the kinds the ai-etl spec names; a kind nobody registered yet simply has nothing deleted
SPEC_KINDS = ("projects", "pipelines", "artifacts", "runs")


class SoftDeletable(Protocol):
    id: Mapped[str]
    name: Mapped[str]
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None]


@dataclass(frozen=True)
class PurgeOptions:
    # also drop the warehouse tables the purged pipelines loaded (the admin asks for it)
    drop_tables: bool = False


def after_commit(session: Session, task: Callable[[], None]) -> None:
    """Work a hook wants done once the transaction is committed (a Dagster reload, a redeploy): the
    route hands these to its background tasks, so nothing outside the DB happens for a rolled-back change."""
    session.info.setdefault("aetl_after_commit", []).append(task)


def report_purged(session: Session, kind: str, count: int) -> None:
    """A purge hook's count of something that is not a registered kind (warehouse tables, ...)."""
    extra: dict[str, int] = session.info.setdefault("aetl_purge_extra", {})
    extra[kind] = extra.get(kind, 0) + count


def pop_after_commit(session: Session) -> list[Callable[[], None]]:
    tasks: list[Callable[[], None]] = session.info.pop("aetl_after_commit", [])
    return tasks


@dataclass(frozen=True)
class Dependent:
    """Entities of another kind owned by one entity (a project's pipelines): deleted, restored and
    purged with their owner. Each hook returns how many it touched."""

    kind: str
    soft_delete: Callable[[Session, str, str, datetime], int]  # owner id, actor id, deleted_at
    restore: Callable[[Session, str, datetime], int]  # owner id, the owner's deleted_at
    purge: Callable[[Session, str, PurgeOptions], int]  # owner id


@dataclass
class DeletableKind:
    kind: str  # plural, as in the spec's by_type keys
    entity_type: str  # singular, as in deleted-entities items
    model: type[Any]
    # refuses a restore that would clash (e.g. a live entity took the name meanwhile)
    check_restore: Callable[[Session, Any], None] | None = None
    # extra work after a restore / before a purge (redeploy, drop Dagster definitions, ...)
    after_restore: Callable[[Session, Any], None] | None = None
    # returns what else it removed (warehouse tables, ...) by kind
    before_purge: Callable[[Session, Any, PurgeOptions], dict[str, int]] | None = None
    dependents: list[Dependent] = field(default_factory=list)


KINDS: dict[str, DeletableKind] = {}


def register_kind(kind: DeletableKind) -> None:
    KINDS[kind.kind] = kind


def register_dependent(owner_kind: str, dependent: Dependent) -> None:
    KINDS[owner_kind].dependents.append(dependent)


def _kind(kind: str) -> DeletableKind:
    found = KINDS.get(kind)
    if found is None:
        raise NotFound(f"No deletable entities of kind '{kind[:32]}'", details={"entity_type": kind[:32]})
    return found


def _deleted_query(
    kind: DeletableKind, *, after: datetime | None = None, before: datetime | None = None
) -> Any:
    model = kind.model
    query = select(model).where(model.deleted_at.is_not(None))
    if after is not None:
        query = query.where(model.deleted_at >= after)
    if before is not None:
        query = query.where(model.deleted_at < before)
    return query


def _row_bytes(session: Session, kind: DeletableKind, ids: list[str]) -> int:
    """On-disk size of the rows themselves (what purging frees in the metadata DB)."""
    if not ids:
        return 0
    table = kind.model.__tablename__  # a model's own name, never user input
    size = session.scalar(
        text(f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t WHERE t.id = ANY(:ids)"),
        {"ids": ids},
    )
    return int(size or 0)


def mb(size_bytes: int) -> float:
    return round(size_bytes / (1024 * 1024), 3)


def cascade_soft_delete(session: Session, kind: str, entity_id: str, actor_id: str) -> dict[str, int]:
    """Soft-deletes what the entity owns (called by the owning domain's delete, same transaction)."""
    found = KINDS.get(kind)
    row = session.get(found.model, entity_id) if found else None
    if found is None or row is None or row.deleted_at is None:
        return {}
    return {d.kind: d.soft_delete(session, entity_id, actor_id, row.deleted_at) for d in found.dependents}


def list_deleted(
    session: Session, kinds: list[str], *, after: datetime | None, before: datetime | None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for name in kinds:
        kind = KINDS.get(name)
        if kind is None:
            continue
        for row in session.scalars(_deleted_query(kind, after=after, before=before)):
            items.append(
                {
                    "entity_type": kind.entity_type,
                    "entity_id": row.id,
                    "entity_name": row.name,
                    "deleted_by": row.deleted_by,
                    "deleted_at": row.deleted_at,
                    "can_restore": True,
                }
            )
    items.sort(key=lambda item: item["deleted_at"], reverse=True)
    return items


def deletion_stats(session: Session) -> dict[str, Any]:
    by_type = dict.fromkeys(SPEC_KINDS, 0)
    oldest: datetime | None = None
    size = 0
    for name, kind in KINDS.items():
        model = kind.model
        count, first = session.execute(
            select(func.count(), func.min(model.deleted_at)).where(model.deleted_at.is_not(None))
        ).one()
        by_type[name] = int(count)
        if first is not None and (oldest is None or first < oldest):
            oldest = first
        ids = list(session.scalars(select(model.id).where(model.deleted_at.is_not(None))))
        size += _row_bytes(session, kind, ids)
    return {
        "total_deleted": sum(by_type.values()),
        "by_type": by_type,
        "oldest_deletion": oldest,
        "disk_space_recoverable_mb": mb(size),
        "disk_space_recoverable_bytes": size,
    }


def _deleted_row(session: Session, kind: DeletableKind, entity_id: str) -> Any:
    row = session.get(kind.model, entity_id, with_for_update=True)
    if row is None or row.deleted_at is None:
        raise NotFound(
            f"No deleted {kind.entity_type} with this id", details={f"{kind.entity_type}_id": entity_id[:64]}
        )
    return row


def restore(session: Session, kind_name: str, entity_id: str) -> tuple[Any, dict[str, int]]:
    kind = _kind(kind_name)
    row = _deleted_row(session, kind, entity_id)
    if kind.check_restore:
        kind.check_restore(session, row)
    deleted_at = row.deleted_at
    row.deleted_at, row.deleted_by = None, None
    related = {d.kind: d.restore(session, entity_id, deleted_at) for d in kind.dependents}
    if kind.after_restore:
        kind.after_restore(session, row)
    return row, related


def _purge_row(
    session: Session, kind: DeletableKind, row: Any, options: PurgeOptions | None = None
) -> dict[str, int]:
    options = options or PurgeOptions()
    cascade = {d.kind: d.purge(session, row.id, options) for d in kind.dependents}
    if kind.before_purge:
        for key, count in kind.before_purge(session, row, options).items():
            cascade[key] = cascade.get(key, 0) + count
    for key, count in session.info.pop("aetl_purge_extra", {}).items():
        cascade[key] = cascade.get(key, 0) + count
    session.delete(row)
    return cascade


def purge(
    session: Session, kind_name: str, entity_id: str, options: PurgeOptions | None = None
) -> tuple[dict[str, int], int]:
    """Removes the entity and what it owns for good; deleted or live (the admin decides)."""
    kind = _kind(kind_name)
    row = session.get(kind.model, entity_id, with_for_update=True)
    if row is None:
        raise NotFound(
            f"{kind.entity_type.capitalize()} not found", details={f"{kind.entity_type}_id": entity_id[:64]}
        )
    size = _row_bytes(session, kind, [row.id])
    return _purge_row(session, kind, row, options), size


def cleanup_old(session: Session, *, older_than_days: int, kinds: list[str], dry_run: bool) -> dict[str, Any]:
    cutoff = security.utcnow() - timedelta(days=older_than_days)
    breakdown: dict[str, int] = {}
    size = 0
    for name in kinds:
        kind = KINDS.get(name)
        if kind is None:
            breakdown[name] = 0
            continue
        rows = list(session.scalars(_deleted_query(kind, before=cutoff)))
        breakdown[name] = len(rows)
        size += _row_bytes(session, kind, [r.id for r in rows])
        if not dry_run:
            for row in rows:
                for dependent_kind, count in _purge_row(session, kind, row).items():
                    breakdown[dependent_kind] = breakdown.get(dependent_kind, 0) + count
    return {
        "dry_run": dry_run,
        "entities_to_delete": sum(breakdown.get(k, 0) for k in kinds),
        "disk_space_to_free_mb": mb(size),
        "disk_space_to_free_bytes": size,
        "breakdown": breakdown,
        "older_than_days": older_than_days,
        "cutoff": cutoff,
    }


def _project_kind() -> DeletableKind:
    from api.projects.models import Project
    from api.projects.service import name_taken

    def check(session: Session, row: Any) -> None:
        if name_taken(session, row.name, except_id=row.id):
            raise Conflict(
                "A live project now has this name; rename it before restoring", details={"name": row.name}
            )

    return DeletableKind(kind="projects", entity_type="project", model=Project, check_restore=check)


register_kind(_project_kind())
# the pipelines domain registers its kind and itself as a dependent of projects
from api.pipelines import deletion as _pipelines_deletion  # noqa: E402, F401
