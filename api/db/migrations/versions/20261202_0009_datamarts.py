"""datamarts and their model versions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:25:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datamarts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("connector_id", sa.String(length=64), nullable=True),
        sa.Column("materialized", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="building", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("refresh_schedule", sa.String(length=120), nullable=True),
        sa.Column("schedule_enabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_run_id", sa.String(length=64), nullable=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_datamarts_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datamarts")),
        sa.UniqueConstraint("name", name=op.f("uq_datamarts_name")),
    )
    op.create_table(
        "datamart_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("datamart_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source_query", sa.Text(), nullable=False),
        sa.Column("model_sql", sa.Text(), nullable=False),
        sa.Column("properties_yml", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["datamart_id"],
            ["datamarts.id"],
            name=op.f("fk_datamart_versions_datamart_id_datamarts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_datamart_versions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datamart_versions")),
        sa.UniqueConstraint("datamart_id", "number", name="uq_datamart_versions_datamart_number"),
    )
    op.create_index(
        op.f("ix_datamart_versions_datamart_id"), "datamart_versions", ["datamart_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_datamart_versions_datamart_id"), table_name="datamart_versions")
    op.drop_table("datamart_versions")
    op.drop_table("datamarts")
