"""The detector's state, metrics, samples, breaches and broker outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from common.broker.outbox import create_outbox_table, drop_outbox_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "detector_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "since", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=True),
        sa.Column("file_digest", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_detector_state_single_row"),
        sa.CheckConstraint("source IN ('file', 'api')", name="ck_detector_state_source"),
        sa.PrimaryKeyConstraint("id"),
    )
    # The single row exists from the start: every check claims it with one UPDATE.
    op.execute("INSERT INTO detector_state (id) VALUES (1)")
    op.create_table(
        "metric_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.String(length=2000), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.Text(), nullable=True),
        sa.Column("open_min_breach", sa.String(length=64), nullable=True),
        sa.Column("open_max_breach", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["metric"], ["metric_state.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_samples_metric_taken_at", "samples", ["metric", "taken_at"])
    op.create_table(
        "breaches",
        sa.Column("breach_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("query", sa.String(length=2000), nullable=False),
        sa.Column("violated", sa.String(length=3), nullable=False),
        sa.Column("limit", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("below", sa.Integer(), nullable=False),
        sa.Column("above", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("violated IN ('min', 'max')", name="ck_breaches_violated"),
        sa.PrimaryKeyConstraint("breach_id"),
    )
    op.create_index("ix_breaches_metric_at", "breaches", ["metric", "at"])
    create_outbox_table(op)


def downgrade():
    drop_outbox_table(op)
    op.drop_index("ix_breaches_metric_at", table_name="breaches")
    op.drop_table("breaches")
    op.drop_index("ix_samples_metric_taken_at", table_name="samples")
    op.drop_table("samples")
    op.drop_table("metric_state")
    op.drop_table("detector_state")
