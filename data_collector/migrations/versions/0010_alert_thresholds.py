"""Alerts: each interest's thresholds and alert state, each airport's figure, the broker outbox.

``user_interests`` gets the user's ``high_value`` and ``low_value`` (integers
>= 0, either or both; with both, high above low: the API refuses the rest
with a 400 first, the constraints keep any other writer to the same rules),
and what the Alert System and the Notifier report: the condition, since
when, its version, when the last email went. ``alert_windows`` holds each
airport's figure over its alert window as last sent to the Alert System;
``broker_outbox`` the messages committed and not yet published.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

from common.broker.outbox import create_outbox_table, drop_outbox_table

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = (
    ("high_value", sa.Integer()),
    ("low_value", sa.Integer()),
    ("alert_condition", sa.String(8)),
    ("alert_since", sa.DateTime(timezone=True)),
    ("alert_version", sa.Integer()),
    ("last_email_at", sa.DateTime(timezone=True)),
)
CHECKS = {
    "ck_user_interests_high_value": "high_value >= 0",
    "ck_user_interests_low_value": "low_value >= 0",
    "ck_user_interests_thresholds_order": "high_value > low_value",
    "ck_user_interests_alert_condition": "alert_condition IN ('inside', 'above', 'below')",
}


def upgrade():
    for name, column_type in COLUMNS:
        op.add_column("user_interests", sa.Column(name, column_type, nullable=True))
    for name, condition in CHECKS.items():
        op.create_check_constraint(name, "user_interests", condition)
    op.create_table(
        "alert_windows",
        sa.Column("airport_code", sa.String(length=4), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("arrivals", sa.Integer(), nullable=False),
        sa.Column("departures", sa.Integer(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("airport_code"),
    )
    create_outbox_table(op)


def downgrade():
    drop_outbox_table(op)
    op.drop_table("alert_windows")
    for name in reversed(CHECKS):
        op.drop_constraint(name, "user_interests", type_="check")
    for name, _column_type in reversed(COLUMNS):
        op.drop_column("user_interests", name)
