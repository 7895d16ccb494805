"""Failed ranges retried on their own schedule; periodic cycles; every departure by time.

collection_retries holds the ranges waiting to be asked for again;
collector_state.last_periodic_cycle_started_at when the last periodic cycle
started; ix_flight_data_first_seen serves GET /flights without an airport
(every departure newest first; arrivals use ix_flight_data_last_seen).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "collection_retries",
        sa.Column("endpoint", sa.String(length=9), nullable=False),
        sa.Column("airport_code", sa.String(length=4), nullable=False),
        sa.Column("range_begin", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.CheckConstraint(
            "endpoint IN ('arrival', 'departure', 'all')", name="ck_collection_retries_endpoint"
        ),
        sa.PrimaryKeyConstraint("endpoint", "airport_code", "range_begin"),
    )
    op.create_index(
        "ix_collection_retries_next_attempt_at", "collection_retries", ["next_attempt_at"]
    )
    op.add_column(
        "collector_state",
        sa.Column("last_periodic_cycle_started_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_flight_data_first_seen", "flight_data", ["first_seen"])


def downgrade():
    op.drop_index("ix_flight_data_first_seen", table_name="flight_data")
    op.drop_column("collector_state", "last_periodic_cycle_started_at")
    op.drop_index("ix_collection_retries_next_attempt_at", table_name="collection_retries")
    op.drop_table("collection_retries")
