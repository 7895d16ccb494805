"""Coalesced collection requests, daily retention on an index of last_seen, sweep trust.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    # Requests coalesce into one pending row: keep the oldest of any waiting now.
    op.execute(
        "DELETE FROM collection_requests WHERE id > (SELECT min(id) FROM collection_requests)"
    )
    op.drop_column("collection_requests", "airport_code")
    op.add_column(
        "collection_requests",
        sa.Column("taken", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index(
        "uq_collection_requests_pending",
        "collection_requests",
        ["taken"],
        unique=True,
        postgresql_where=sa.text("NOT taken"),
    )
    op.add_column("collector_state", sa.Column("retention_ran_on", sa.Date(), nullable=True))
    op.add_column(
        "collector_state",
        sa.Column("sweep_unreliable_since", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_flight_data_last_seen", "flight_data", ["last_seen"])


def downgrade():
    op.drop_index("ix_flight_data_last_seen", table_name="flight_data")
    op.drop_column("collector_state", "sweep_unreliable_since")
    op.drop_column("collector_state", "retention_ran_on")
    op.drop_index("uq_collection_requests_pending", table_name="collection_requests")
    op.drop_column("collection_requests", "taken")
    op.add_column(
        "collection_requests",
        sa.Column("airport_code", sa.String(length=4), nullable=True),
    )
