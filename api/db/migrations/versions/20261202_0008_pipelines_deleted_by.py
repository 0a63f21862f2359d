"""pipelines.deleted_by: who soft-deleted a pipeline (the admin deletion registry lists it)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pipelines", sa.Column("deleted_by", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("pipelines", "deleted_by")
