"""The daily credits the worker collects with, for the processes that do not collect.

``daily_credits`` is the worker's ``OPENSKY_DAILY_CREDITS`` as its last cycle
had it. Its default follows the OpenSky account, and only the worker holds
the account's credentials (on Kubernetes it runs apart), so the web role's
own setting may differ; ``collection_daily_credits`` shows this one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("collector_state", sa.Column("daily_credits", sa.Integer(), nullable=True))


def downgrade():
    op.drop_column("collector_state", "daily_credits")
