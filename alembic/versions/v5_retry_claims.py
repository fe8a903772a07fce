"""Retry claims: a failed trial is queued for its retry only by the recovery that claims it in its cost row.

Recoveries take turns under an advisory lock, but a lock whose connection is cut is released while
its holder still works: two recoveries could then each queue a retry of one failed trial. The claim
is one conditional UPDATE of the trial's cost row (``retry_claimed_at``, by the database's clock), so
exactly one of them queues it; a claim older than the grace period whose retry never appeared (its
recovery died in between) may be taken again.

Revision ID: v5_retry_claims
Revises: v4_sessions
Create Date: 2026-12-07

Carries its own copy of the tables it touches: never import automl's models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v5_retry_claims"
down_revision = "v4_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automl_trial_cost") as batch:
        batch.add_column(sa.Column("retry_claimed_at", sa.DateTime, nullable=True))
    # Existing studies need nothing more: a trial whose retry is queued already is never queued again.


def downgrade() -> None:
    with op.batch_alter_table("automl_trial_cost") as batch:
        batch.drop_column("retry_claimed_at")
