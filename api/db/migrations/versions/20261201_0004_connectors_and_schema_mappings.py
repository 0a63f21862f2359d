"""connectors and schema mappings (the integrator chains this after the pipelines migration)

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01 21:35:12.562719+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("last_tested", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_status", sa.String(length=16), nullable=True),
        sa.Column("test_message", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_connectors_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connectors")),
    )
    op.create_index(op.f("ix_connectors_type"), "connectors", ["type"], unique=False)
    op.create_index(
        "uq_connectors_name_live",
        "connectors",
        ["name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "schema_mappings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source_connector_id", sa.String(length=40), nullable=True),
        sa.Column("source_table", sa.String(length=512), nullable=False),
        sa.Column("target_connector_id", sa.String(length=40), nullable=True),
        sa.Column("target_table", sa.String(length=200), nullable=False),
        sa.Column("target_database", sa.String(length=64), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_schema_mappings_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["source_connector_id"],
            ["connectors.id"],
            name=op.f("fk_schema_mappings_source_connector_id_connectors"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["target_connector_id"],
            ["connectors.id"],
            name=op.f("fk_schema_mappings_target_connector_id_connectors"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_mappings")),
    )
    op.create_index(
        op.f("ix_schema_mappings_source_connector_id"),
        "schema_mappings",
        ["source_connector_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_schema_mappings_source_connector_id"), table_name="schema_mappings")
    op.drop_table("schema_mappings")
    op.drop_index(
        "uq_connectors_name_live", table_name="connectors", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_index(op.f("ix_connectors_type"), table_name="connectors")
    op.drop_table("connectors")
