"""The credits spent per UTC day, so that every cycle and replica keeps within the quota.

collector_state.credits_day and credits_spent count the credits the
collector's requests cost on that UTC day; over_budget_on is the day a
cycle left requests for lack of credits (cycles asked for that day wait for
the next one).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("collector_state", sa.Column("credits_day", sa.Date(), nullable=True))
    op.add_column(
        "collector_state",
        sa.Column("credits_spent", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("collector_state", sa.Column("over_budget_on", sa.Date(), nullable=True))


def downgrade():
    op.drop_column("collector_state", "over_budget_on")
    op.drop_column("collector_state", "credits_spent")
    op.drop_column("collector_state", "credits_day")
