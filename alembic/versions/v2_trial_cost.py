"""Per-trial cost: which worker ran a trial on which device, what it reserved and spent, its heartbeat.

Revision ID: v2_trial_cost
Revises: v1_initial
Create Date: 2025-01-02

Carries its own copy of the tables it touches: never import automl's models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v2_trial_cost"
down_revision = "v1_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automl_trial_cost",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_name", sa.String(512), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("reserved_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("spent_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.UniqueConstraint("study_name", "trial_number", name="uq_automl_trial_cost_study_trial"),
    )
    op.create_index("ix_automl_trial_cost_study_state", "automl_trial_cost", ["study_name", "state"])


def downgrade() -> None:
    op.drop_index("ix_automl_trial_cost_study_state", table_name="automl_trial_cost")
    op.drop_table("automl_trial_cost")
