"""Metadata-DB tables of datamarts: the datamart and its immutable model versions.

The data lives in the warehouse (the dbt model's table or view); runs live in Dagster's storage.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow

# building: first build running; active: built; failed: the last build failed (last_error says why)
DATAMART_STATUSES = ("building", "active", "failed")


class Datamart(Base):
    __tablename__ = "datamarts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dm"))
    # the dbt model's name and the warehouse table's; unique for ever (a model file per name)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    connector_id: Mapped[str | None] = mapped_column(String(64))
    materialized: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    status: Mapped[str] = mapped_column(String(16), default="building", server_default="building")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    refresh_schedule: Mapped[str | None] = mapped_column(String(120))
    schedule_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_run_id: Mapped[str | None] = mapped_column(String(64))
    built_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)
    deleted_at: Mapped[datetime | None]


class DatamartVersion(Base):
    """One generated model: the query as given and the files written for it."""

    __tablename__ = "datamart_versions"
    __table_args__ = (UniqueConstraint("datamart_id", "number", name="uq_datamart_versions_datamart_number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dmv"))
    datamart_id: Mapped[str] = mapped_column(ForeignKey("datamarts.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    source_query: Mapped[str] = mapped_column(Text)
    model_sql: Mapped[str] = mapped_column(Text)
    properties_yml: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
