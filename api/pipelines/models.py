"""Metadata-DB tables of pipelines: the pipeline row and its immutable document versions.

Runs are not stored here: Dagster's run storage is the one source of truth for them. Triggers live
inside the document (`triggers`), so every trigger change is a version like any other change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow

PIPELINE_STATUSES = ("draft", "active", "paused", "failed")
# none: never deployed; deploying: reload in progress; deployed; failed (deploy_error says why); undeployed
DEPLOY_STATUSES = ("none", "deploying", "deployed", "failed", "undeployed")


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (Index("ix_pipelines_deleted_at_created_at", "deleted_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pipe"))
    project_id: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="draft", server_default="draft")
    # the version deploy and run use (activate picks it); every new version becomes active
    active_version_id: Mapped[str | None] = mapped_column(String(40))
    # the version the code location builds definitions from
    deployed_version_id: Mapped[str | None] = mapped_column(String(40))
    deploy_status: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    deploy_error: Mapped[str | None] = mapped_column(Text)
    deployed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None] = mapped_column(String(40))


class PipelineVersion(Base):
    """One immutable document; `number` counts from 1 per pipeline."""

    __tablename__ = "pipeline_versions"
    __table_args__ = (UniqueConstraint("pipeline_id", "number", name="uq_pipeline_versions_pipeline_number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pver"))
    pipeline_id: Mapped[str] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    version_name: Mapped[str | None] = mapped_column(String(200))
    change_description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
