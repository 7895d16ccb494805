"""The emails sent, and the broker outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from common.broker.outbox import create_outbox_table, drop_outbox_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sent_emails",
        sa.Column("crossing_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crossing_id"),
    )
    op.create_index("ix_sent_emails_sent_at", "sent_emails", ["sent_at"])
    create_outbox_table(op)


def downgrade():
    drop_outbox_table(op)
    op.drop_table("sent_emails")
