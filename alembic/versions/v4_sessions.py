"""Sessions: each ``automl run`` on a study takes the next session number, so its sampler draws new points.

A resumed study, or a second machine joining one, seeded its sampler as the first run did and
sampled again the parameters already tried. ``sessions_started`` is incremented in the same
UPDATE that opens the study's ledger, so two runs starting at once never get the same number.

Revision ID: v4_sessions
Revises: v3_reservations
Create Date: 2026-12-02

Carries its own copy of the tables it touches: never import automl's models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v4_sessions"
down_revision = "v3_reservations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automl_budget_ledger") as batch:
        # An existing study has run at least once: its next run must not repeat the first one's draws.
        batch.add_column(sa.Column("sessions_started", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("automl_budget_ledger") as batch:
        batch.drop_column("sessions_started")
