"""Stored field mappings: which source column feeds which target column, with an optional expression."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow


class SchemaMapping(Base):
    __tablename__ = "schema_mappings"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("map"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    source_connector_id: Mapped[str | None] = mapped_column(
        ForeignKey("connectors.id", ondelete="SET NULL"), index=True
    )
    source_table: Mapped[str] = mapped_column(String(512))
    target_connector_id: Mapped[str | None] = mapped_column(ForeignKey("connectors.id", ondelete="SET NULL"))
    target_table: Mapped[str] = mapped_column(String(200))
    target_database: Mapped[str | None] = mapped_column(String(64))
    # [{"source": "amt", "target": "amount", "target_type": "Decimal(12, 2)", "expression": null}, ...]
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)
