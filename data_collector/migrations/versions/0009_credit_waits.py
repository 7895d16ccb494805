"""What a cycle left for lack of credits: the budget it had, the airports that wait.

``over_budget_on`` (0006) is the day a cycle left requests for lack of
credits; ``over_budget_credits`` the daily budget it had then, so a worker
restarted with a higher one collects at once; ``over_budget_airports`` the
airports whose collection waits for the next UTC day's credits, which
``GET /interests/{email}`` tells their followers.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("collector_state", sa.Column("over_budget_credits", sa.Integer(), nullable=True))
    op.add_column(
        "collector_state",
        sa.Column("over_budget_airports", postgresql.ARRAY(sa.String(4)), nullable=True),
    )


def downgrade():
    op.drop_column("collector_state", "over_budget_airports")
    op.drop_column("collector_state", "over_budget_credits")
