"""pipelines and their immutable versions (runs stay in Dagster's storage)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:32:12.770483+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("active_version_id", sa.String(length=40), nullable=True),
        sa.Column("deployed_version_id", sa.String(length=40), nullable=True),
        sa.Column("deploy_status", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("deploy_error", sa.Text(), nullable=True),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_pipelines_owner_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipelines")),
    )
    op.create_index(
        "ix_pipelines_deleted_at_created_at", "pipelines", ["deleted_at", "created_at"], unique=False
    )
    op.create_index(op.f("ix_pipelines_owner_id"), "pipelines", ["owner_id"], unique=False)
    op.create_index(op.f("ix_pipelines_project_id"), "pipelines", ["project_id"], unique=False)
    op.create_table(
        "pipeline_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("pipeline_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version_name", sa.String(length=200), nullable=True),
        sa.Column("change_description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_pipeline_versions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipelines.id"],
            name=op.f("fk_pipeline_versions_pipeline_id_pipelines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_versions")),
        sa.UniqueConstraint("pipeline_id", "number", name="uq_pipeline_versions_pipeline_number"),
    )
    op.create_index(
        op.f("ix_pipeline_versions_pipeline_id"), "pipeline_versions", ["pipeline_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pipeline_versions_pipeline_id"), table_name="pipeline_versions")
    op.drop_table("pipeline_versions")
    op.drop_index(op.f("ix_pipelines_project_id"), table_name="pipelines")
    op.drop_index(op.f("ix_pipelines_owner_id"), table_name="pipelines")
    op.drop_index("ix_pipelines_deleted_at_created_at", table_name="pipelines")
    op.drop_table("pipelines")
