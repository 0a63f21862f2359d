"""The connectors table: public settings as JSON, secrets as one Fernet token (never in clear)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow


class Connector(Base):
    __tablename__ = "connectors"
    __table_args__ = (
        # a name is unique among live connectors; a deleted one frees its name
        Index("uq_connectors_name_live", "name", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("conn"))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    # settings without secrets (host, port, database, path, ...)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet token of the JSON of the secret fields (purpose "connector-secrets")
    secrets: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    last_tested: Mapped[datetime | None]
    test_status: Mapped[str | None] = mapped_column(String(16))
    test_message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
