"""automl's first tables: the study's source and the budget ledger.

Revision ID: v1_initial
Revises:
Create Date: 2025-01-01

Carries its own copy of the tables it touches: never import automl's models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v1_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automl_study_source",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_name", sa.String(512), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("plugins", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("study_name", "sha256", name="uq_automl_study_source_study_sha256"),
    )
    op.create_table(
        "automl_budget_ledger",
        sa.Column("study_name", sa.String(512), primary_key=True),
        sa.Column("total_seconds", sa.Float, nullable=True),
        sa.Column("reserved_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("spent_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("automl_budget_ledger")
    op.drop_table("automl_study_source")
