"""Collection bookkeeping: collected days, requested cycles, collector state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "collected_days",
        sa.Column("airport_code", sa.String(length=4), nullable=False),
        sa.Column("direction", sa.String(length=9), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("fetched_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "direction IN ('arrival', 'departure')", name="ck_collected_days_direction"
        ),
        sa.PrimaryKeyConstraint("airport_code", "direction", "day"),
    )
    op.create_table(
        "collection_requests",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("airport_code", sa.String(length=4), nullable=True),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "collector_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credits_remaining", sa.Integer(), nullable=True),
        sa.Column("credits_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_cycle_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_cycle_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_cycle_outcome", sa.String(length=32), nullable=True),
        sa.Column("last_cycle_mode", sa.String(length=16), nullable=True),
        sa.Column("last_cycle_requests", sa.Integer(), nullable=True),
        sa.Column("last_cycle_credits", sa.Integer(), nullable=True),
        sa.Column("last_cycle_flights", sa.Integer(), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_collector_state_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    # The one row every process updates in place.
    op.execute("INSERT INTO collector_state (id) VALUES (1)")


def downgrade():
    op.drop_table("collector_state")
    op.drop_table("collection_requests")
    op.drop_table("collected_days")
