"""The last interest reconciliation pass: when, how it ended, what it found.

``reconcile_outcome`` is ``done`` (it removed the interests of the users the
User Manager does not know, maybe none), ``refused`` (more of them than a
pass may remove: nothing was removed) or ``stopped`` (the User Manager could
not answer). ``/health`` and ``/metrics`` read it, so every replica reports
the same, whichever process ran the pass.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    ("reconciled_at", sa.DateTime(timezone=True)),
    ("reconcile_outcome", sa.String(16)),
    ("reconcile_removed", sa.Integer()),
    ("reconcile_unknown_users", sa.Integer()),
    ("reconcile_users", sa.Integer()),
)


def upgrade():
    for name, column_type in COLUMNS:
        op.add_column("collector_state", sa.Column(name, column_type, nullable=True))


def downgrade():
    for name, _column_type in reversed(COLUMNS):
        op.drop_column("collector_state", name)
