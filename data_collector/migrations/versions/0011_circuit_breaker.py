"""The circuit breaker around OpenSky, shared by every process through collector_state.

``breaker_state`` (closed, open, half-open), ``breaker_failures`` (calls
failed in a row) and ``breaker_opened_at``: the cycle resumes the breaker
from them and saves it back at each commit, so any replica's next cycle
respects an open breaker, and ``/health`` and ``/metrics`` show it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "collector_state",
        sa.Column("breaker_state", sa.String(9), nullable=False, server_default="closed"),
    )
    op.add_column(
        "collector_state",
        sa.Column("breaker_failures", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("collector_state", sa.Column("breaker_opened_at", sa.DateTime(timezone=True)))
    op.create_check_constraint(
        "ck_collector_state_breaker_state",
        "collector_state",
        "breaker_state IN ('closed', 'open', 'half-open')",
    )


def downgrade():
    op.drop_constraint("ck_collector_state_breaker_state", "collector_state", type_="check")
    op.drop_column("collector_state", "breaker_opened_at")
    op.drop_column("collector_state", "breaker_failures")
    op.drop_column("collector_state", "breaker_state")
