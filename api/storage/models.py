"""Metadata-DB tables of watched storage: mounts (credentials encrypted), watches, imports.

Import runs themselves live in Dagster's run storage; an import row only ties the API's id to its run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow


class StorageMount(Base):
    __tablename__ = "storage_mounts"
    __table_args__ = (
        Index(
            "uq_storage_mounts_point_live",
            "mount_point",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("storage"))
    storage_type: Mapped[str] = mapped_column(String(16))
    mount_point: Mapped[str] = mapped_column(String(1024))
    # host, port, share_name, path, username: never a secret
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet token of the JSON of the secret fields (purpose "storage-credentials")
    secrets: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="mounted", server_default="mounted")
    available_space_gb: Mapped[float | None] = mapped_column(Float)
    mounted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    deleted_at: Mapped[datetime | None]


class StorageWatch(Base):
    __tablename__ = "storage_watches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("watch"))
    storage_id: Mapped[str] = mapped_column(ForeignKey("storage_mounts.id", ondelete="CASCADE"), index=True)
    watch_path: Mapped[str] = mapped_column(String(1024))
    file_pattern: Mapped[str] = mapped_column(String(256), default="*")
    recursive: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    auto_import: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    # target_table, target_database, create_table_if_not_exists, sheet
    import_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    poll_interval_seconds: Mapped[int] = mapped_column(Integer, default=2, server_default="5")
    # written by the sensor: distinct complete files it has seen
    files_detected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_checked_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    deleted_at: Mapped[datetime | None]


class StorageImport(Base):
    __tablename__ = "storage_imports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("import"))
    storage_id: Mapped[str] = mapped_column(ForeignKey("storage_mounts.id", ondelete="CASCADE"), index=True)
    file_path: Mapped[str] = mapped_column(String(1024))
    target_table: Mapped[str] = mapped_column(String(200))
    target_database: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    inferred_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    estimated_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
