"""Reservations before trials: a cost row exists from the moment its time is reserved, and the ledger counts trials.

The cost row is written in the same transaction as the reservation, before Optuna creates the
trial (``trial_number`` is NULL and ``state`` is ``reserved`` until then), so a worker killed in
between leaves a row that a later worker can find and give back. ``trials_started`` keeps the
number of trials that count towards ``n_trials`` in the ledger, so a worker reserves its time and
its trial slot in one conditional UPDATE.

Revision ID: v3_reservations
Revises: v2_trial_cost
Create Date: 2026-11-21

Carries its own copy of the tables it touches: never import automl's models here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v3_reservations"
down_revision = "v2_trial_cost"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automl_budget_ledger") as batch:
        batch.add_column(sa.Column("trials_started", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("automl_trial_cost") as batch:
        batch.alter_column("trial_number", existing_type=sa.Integer, nullable=True)

    # Existing studies: every trial with a cost row counted, less the trials Optuna re-ran as retries
    # (a retry replaces the trial it retries; one still waiting to run has no cost row yet).
    started = ("(SELECT count(*) FROM automl_trial_cost c "
               "WHERE c.study_name = automl_budget_ledger.study_name)")
    if "trial_system_attributes" in sa.inspect(op.get_bind()).get_table_names():
        started += (" - (SELECT count(*) FROM trial_system_attributes a "
                    "JOIN trials t ON a.trial_id = t.trial_id JOIN studies s ON s.study_id = t.study_id "
                    "WHERE s.study_name = automl_budget_ledger.study_name AND a.key = 'failed_trial')")
    op.execute(f"UPDATE automl_budget_ledger SET trials_started = {started}")


def downgrade() -> None:
    op.execute("DELETE FROM automl_trial_cost WHERE trial_number IS NULL")
    with op.batch_alter_table("automl_trial_cost") as batch:
        batch.alter_column("trial_number", existing_type=sa.Integer, nullable=False)
    with op.batch_alter_table("automl_budget_ledger") as batch:
        batch.drop_column("trials_started")
