"""storage mounts, watches and imports (watched folders)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 01:20:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_mounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("storage_type", sa.String(length=16), nullable=False),
        sa.Column("mount_point", sa.String(length=1024), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="mounted", nullable=False),
        sa.Column("available_space_gb", sa.Float(), nullable=True),
        sa.Column("mounted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_storage_mounts_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_mounts")),
    )
    op.create_index(
        "uq_storage_mounts_point_live",
        "storage_mounts",
        ["mount_point"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "storage_watches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("storage_id", sa.String(length=40), nullable=False),
        sa.Column("watch_path", sa.String(length=1024), nullable=False),
        sa.Column("file_pattern", sa.String(length=256), nullable=False),
        sa.Column("recursive", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("auto_import", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("import_config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer(), server_default="5", nullable=False),
        sa.Column("files_detected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_storage_watches_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["storage_id"],
            ["storage_mounts.id"],
            name=op.f("fk_storage_watches_storage_id_storage_mounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_watches")),
    )
    op.create_index(op.f("ix_storage_watches_storage_id"), "storage_watches", ["storage_id"], unique=False)
    op.create_table(
        "storage_imports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("storage_id", sa.String(length=40), nullable=False),
        sa.Column("file_path", sa.String(length=1024), nullable=False),
        sa.Column("target_table", sa.String(length=200), nullable=False),
        sa.Column("target_database", sa.String(length=64), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("inferred_schema", sa.JSON(), nullable=False),
        sa.Column("estimated_rows", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_storage_imports_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["storage_id"],
            ["storage_mounts.id"],
            name=op.f("fk_storage_imports_storage_id_storage_mounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_imports")),
    )
    op.create_index(op.f("ix_storage_imports_storage_id"), "storage_imports", ["storage_id"], unique=False)
    op.create_index(op.f("ix_storage_imports_run_id"), "storage_imports", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_storage_imports_run_id"), table_name="storage_imports")
    op.drop_index(op.f("ix_storage_imports_storage_id"), table_name="storage_imports")
    op.drop_table("storage_imports")
    op.drop_index(op.f("ix_storage_watches_storage_id"), table_name="storage_watches")
    op.drop_table("storage_watches")
    op.drop_index(
        "uq_storage_mounts_point_live",
        table_name="storage_mounts",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_table("storage_mounts")
